"""What a GPU leaves undefined (a hang, garbage, or arguments shifted in memory), the emulator
reports as an error naming the kernel: barriers and shuffles some threads never reach, masks
naming missing lanes, too much shared memory, launches a GPU refuses, and arguments of the
wrong type or width (tests/emulator_kernels/broken.cu, features.cu)."""
import re

import numpy as np
import pytest

from cuda_emulator import CompileError, EmulatorError, compile_module, scheduled
from cuda_emulator.build import rewrite_shared
from emulator_support import load_test_kernels, require_compiler

require_compiler()

BROKEN = ["barrier_in_branch", "two_barriers", "return_before_barrier",
          "lane_returns_before_shuffle", "barrier_against_shuffle", "mask_beyond_block",
          "reads_outside_mask", "too_much_shared"]


@pytest.fixture(scope="module")
def broken():
    return load_test_kernels("broken.cu", *BROKEN)


@pytest.fixture(scope="module")
def features():
    return load_test_kernels("features.cu", "widths", "scale4", "coordinates")


# Which thread gets there first depends on the schedule, so each case accepts either order.
THREADS = r"threads? [-\d, ]+ \(linear ids, of \d+\)"
RETURNED_AT_BARRIER = (rf"(returned while the __syncthreads\(\) of line {{line}} holds {THREADS}"
                       rf"|__syncthreads\(\) of line {{line}} is reached by .* but {THREADS} "
                       rf"returned before it)")
CASES = [  # kernel, block size, what the error must say
    ("barrier_in_branch", 64, RETURNED_AT_BARRIER.format(line=8)),
    ("two_barriers", 64, rf"waits at the __syncthreads\(\) of line (17|19) while the one of "
     rf"line (17|19) holds {THREADS}"),
    ("return_before_barrier", 64, RETURNED_AT_BARRIER.format(line=28)),
    ("lane_returns_before_shuffle", 32, rf"(thread \(31,0,0\) of block \(\d,0,0\) returned "
     rf"while the __shfl_xor_sync of line 36 holds {THREADS}, waiting for it|calls "
     rf"__shfl_xor_sync of line 36 but thread \(31,0,0\) of block \(\d,0,0\), named in its "
     rf"mask, has returned)"),
    ("barrier_against_shuffle", 32, rf"(thread \(0,0,0\) of block \(\d,0,0\) reached the "
     rf"__syncthreads\(\) of line 44 while the __shfl_down_sync of line 46 holds {THREADS}, "
     rf"waiting for it|calls __shfl_down_sync of line 46 but thread \(0,0,0\) of block "
     rf"\(\d,0,0\), named in its mask, waits at the __syncthreads\(\) of line 44)"),
    ("mask_beyond_block", 16, r"mask 0xffffffff, which names lanes that do not exist"),
    ("reads_outside_mask", 32, r"reads lane 1\d in the __shfl_xor_sync of line 61, which its "
     r"mask leaves out"),
    ("too_much_shared", 32, r"uses 52000 bytes of shared memory .* more than 48 KiB"),
]


@pytest.mark.parametrize("mode", ["sequential", "shuffled", "concurrent"])
@pytest.mark.parametrize("kernel, threads, message", CASES, ids=[c[0] for c in CASES])
def test_broken_kernels_fail_naming_kernel_block_and_threads(broken, kernel, threads, message,
                                                             mode):
    out = np.zeros(64, np.float32)
    with scheduled(mode, seed=11), pytest.raises(EmulatorError) as caught:
        broken.launch(kernel, 2, threads, (out,))
    assert str(caught.value).startswith(f"kernel {kernel}: "), caught.value
    assert re.search(message, str(caught.value)), caught.value


def test_the_module_runs_again_after_a_failed_launch(broken, features):
    with pytest.raises(EmulatorError):
        broken.launch("barrier_in_branch", 3, 64, (np.zeros(64, np.float32),))
    out = np.zeros(6 * 64, np.uint32)
    features.launch("coordinates", 1, 64, (out,))
    np.testing.assert_array_equal(out.reshape(64, 6)[:, 0], np.arange(64))


WIDTH_ARGS = (np.int8(1), np.int16(2), np.int32(3), np.int64(4), np.uint8(5), np.uint16(6),
              np.uint32(7), np.uint64(8), np.float32(9), np.float64(10), np.bool_(True))


@pytest.mark.parametrize("position, wrong, expected, got", [
    (3, np.int64(3), r"int: expected numpy.int32", r"numpy.int64\(3\)"),
    (3, 3, r"int: expected numpy.int32", r"int 3"),
    (4, np.int32(4), r"long long int: expected numpy.int64 or a Python int", r"numpy.int32\(4\)"),
    (4, 2**63, r"long long int: expected numpy.int64 or a Python int",
     r"int 9223372036854775808, outside long long"),
    (7, np.int32(7), r"unsigned int: expected numpy.uint32", r"numpy.int32\(7\)"),
    (8, 8, r"long long unsigned int: expected numpy.uint64", r"int 8"),
    (9, 9.0, r"float: expected numpy.float32", r"float 9.0"),
    (10, np.float32(10), r"double: expected numpy.float64 or a Python float",
     r"numpy.float32\(10.0\)"),
    (11, 1, r"bool: expected numpy.bool or a Python bool", r"int 1"),
    (3, np.zeros(2, np.int32), r"int: expected numpy.int32", r"a numpy.ndarray of shape \(2,\)"),
])
def test_a_scalar_of_the_wrong_kind_or_width_is_a_type_error(features, position, wrong,
                                                             expected, got):
    args = [np.zeros(11, np.float64), *WIDTH_ARGS]
    args[position] = wrong
    with pytest.raises(TypeError, match=rf"^widths: argument {position + 1} of 12 is "
                                        rf"{expected}; got {got}$"):
        features.launch("widths", 1, 1, tuple(args))


def test_pointer_arguments_are_checked(features):
    n = np.int64(8)
    src, out = np.zeros(8, np.float32), np.zeros(8, np.float32)
    with pytest.raises(TypeError, match=r"argument 1 of 5 is const float\*: expected an array "
                                        r"of float32 \(or None\); got a numpy.ndarray of shape "
                                        r"\(8,\) of float64"):
        features.launch("scale4", 1, 32, (np.zeros(8), out, n, np.int64(0), np.float32(1)))
    with pytest.raises(TypeError, match=r"argument 2 of 5 is float\*: .*; got numpy.float32"):
        features.launch("scale4", 1, 32, (src, np.float32(1), n, np.int64(0), np.float32(1)))
    misaligned = np.frombuffer(np.zeros(40, np.uint8).data, np.float32, 8, offset=2)
    with pytest.raises(TypeError, match=r"argument 1 of 5 .* not 4-byte aligned"):
        features.launch("scale4", 1, 32, (misaligned, out, n, np.int64(0), np.float32(1)))
    with pytest.raises(TypeError, match=r"scale4 takes 5 arguments \(const float\*, float\*, "
                                        r"long long int, long long int, float\); 4 given"):
        features.launch("scale4", 1, 32, (src, out, n, np.int64(0)))


def test_an_object_with_data_ptr_passes_its_address(features):
    class Buffer:
        def __init__(self, array):
            self.array, self.dtype = array, array.dtype
            self.data = type("Pointer", (), {"ptr": array.ctypes.data})()

    src, out = np.arange(8, dtype=np.float32), np.zeros(8, np.float32)
    features.launch("scale4", 1, 32, (Buffer(src), Buffer(out), np.int64(8), np.int64(2),
                                      np.float32(3)))
    np.testing.assert_array_equal(out, src * 3)


def test_swapped_launcher_arguments_are_caught(features):
    """A GPU would read the bytes of n4 as n and so on; here the first swap is an error."""
    src, out = np.zeros(8, np.float32), np.zeros(8, np.float32)
    with pytest.raises(TypeError, match="argument 4 of 5 is long long int: .* got numpy.float32"):
        features.launch("scale4", 1, 32, (src, out, np.int64(8), np.float32(1), np.int64(2)))


@pytest.mark.parametrize("grid, block, message", [
    ((1,), (32, 33), r"a block of \(32, 33, 1\) has more than 1024 threads"),
    ((1,), (1025,), r"block \(1025, 1, 1\) is outside"),
    ((1,), (1, 1, 65), r"block \(1, 1, 65\) is outside"),
    ((1, 65536), (32,), r"grid \(1, 65536, 1\) is outside"),
    ((0,), (32,), r"grid \(0, 1, 1\) is outside"),
    ((1, 2, 3, 4), (32,), r"grid must be an int or 1 to 3 ints"),
    ((1.0,), (32,), r"grid must be an int or 1 to 3 ints"),
])
def test_launches_a_gpu_refuses_are_value_errors(features, grid, block, message):
    out = np.zeros(6 * 1024, np.uint32)
    with pytest.raises(ValueError, match=rf"^coordinates: {message}"):
        features.launch("coordinates", grid, block, (out,))


def test_shared_declarations_are_rewritten_line_for_line():
    code = ("// a __shared__ comment\n__global__ void k() {\n"
            "    alignas(16) __shared__ float tile[2][8];  // __shared__ again\n"
            "    __shared__ bool last;\n    extern __shared__ __align__(16) float stage[];\n"
            "    __shared__ unsigned long long\n        words[4];\n"
            "    puts(\"__shared__ in a string\");\n}\n")
    lines = rewrite_shared(code).splitlines()
    assert len(lines) == len(code.splitlines())
    assert lines[0] == "// a __shared__ comment" and "in a string" in lines[7]
    assert lines[2] == "    EMU_SHARED(16, float, tile, [2][8]);  // __shared__ again"
    assert lines[3:7] == ["    EMU_SHARED(0, bool, last, );",
                          "    EMU_DYNAMIC_SHARED(float, stage);",
                          "    EMU_SHARED(0, unsigned long long, words, [4]);", ""]


def test_unknown_kernel_and_unsupported_source(features):
    with pytest.raises(KeyError, match=r"'nope' is not a kernel of this module"):
        features.launch("nope", 1, 1, ())
    with pytest.raises(CompileError, match=r"g\+\+ failed on source.cu"):
        compile_module("__global__ void k(float* x) { x[0] = y; }", (), ("k",))
    with pytest.raises(CompileError, match=r"line 2: the emulator supports"):
        compile_module("__global__ void k(float* x) {\n __shared__ float a[2], b[2]; }", (),
                       ("k",))
    with pytest.raises(CompileError, match="does not know the NVRTC option '--frobnicate'"):
        compile_module("__global__ void k() {}", ("--frobnicate",), ("k",))
