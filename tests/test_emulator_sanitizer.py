"""The emulator under AddressSanitizer + UndefinedBehaviorSanitizer: the CPU's stand-in for
compute-sanitizer's memcheck. A kernel reading past an array fails, a float4 access at an
address a GPU would fault on fails, and every real kernel, launched by gpunet's launchers
through tests/test_emulator_kernels.py and tests/test_gemm_emulated.py, runs clean.

Each check is a Python process started with ``sanitizer_env()`` (libasan preloaded, any
report fatal, sanitized modules built). What ASan cannot see: a read past the end of a view
that stays inside its base array, and reads of device memory no kernel wrote (use the
emulator's NaN-filled shared memory and the tests' poisoned outputs for those).
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cuda_emulator import Flavour, compile_module
from cuda_emulator.build import CompileError
from emulator_support import require_compiler

require_compiler()
TESTS = Path(__file__).resolve().parent

try:
    from cuda_emulator.sanitizer import libasan, sanitizer_env

    libasan()
except CompileError as exc:
    pytest.skip(str(exc), allow_module_level=True)


def run_sanitized(code: str = "", *args: str, timeout: int = 900):
    """Run Python (``-c code`` or ``args``) under the sanitizers; returns the process."""
    command = [sys.executable, "-c", code] if code else [sys.executable, *args]
    return subprocess.run(command, cwd=TESTS, env=sanitizer_env(), capture_output=True,
                          text=True, timeout=timeout)


OOB = """
import numpy as np
from emulator_support import load_test_kernels
module = load_test_kernels("oob_read.cu", "sum_partials")
partial, grad_bias = np.ones((4, 30), np.float32), np.zeros(30, np.float32)
module.launch("sum_partials", 1, 32, (partial, grad_bias, np.int32(4), np.int32(30)))
print("no error reported")
"""


def test_an_out_of_bounds_read_in_a_kernel_fails():
    done = run_sanitized(OOB)
    assert done.returncode == 86, done.stdout + done.stderr[-3000:]
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in done.stderr
    assert "READ of size 4" in done.stderr
    assert "oob_read.cu:11" in done.stderr  # the loop body, in the test's own file


MISALIGNED_FLOAT4 = """
import numpy as np
from emulator_support import real_module
from gpunet.ops.launchers import linear_relu
module = real_module(linear_relu.SOURCE)
buffer = np.zeros(33, np.float32)
out = buffer[1:] if buffer.ctypes.data % 16 == 0 else buffer[:-1]  # not 16-byte aligned
bias = np.zeros(8, np.float32)
module.launch("bias_act_inplace<true, true>", 1, 32,  # n4 > 0 although misaligned
              (out, bias, np.int64(32), np.int64(8), np.int64(8), np.int64(32)))
print("no error reported")
"""


def test_a_float4_access_a_gpu_would_fault_on_fails():
    """A launcher passing n4 > 0 for a misaligned array (what vector_count prevents)."""
    done = run_sanitized(MISALIGNED_FLOAT4)
    assert done.returncode == 87, done.stdout + done.stderr[-3000:]
    assert "misaligned address" in done.stderr
    assert "which requires 16 byte alignment" in done.stderr
    assert "linear_relu.cu:" in done.stderr


def test_every_real_kernel_runs_clean():
    """Sequential schedule, and concurrent for softmax_xent and grad_norm (their atomics and
    fences switch fibers mid-block, which ASan must follow)."""
    done = run_sanitized("", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                         "test_emulator_kernels.py", "test_gemm_emulated.py",
                         "-k", "not shuffled and (not concurrent or softmax or bad_labels or norm)",
                         timeout=1800)
    tail = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, tail
    assert "AddressSanitizer" not in done.stderr and "runtime error" not in done.stderr, tail
    assert " passed" in done.stdout and "failed" not in done.stdout, tail


def test_a_sanitized_module_needs_the_preloaded_runtime():
    with pytest.raises(RuntimeError, match=r"need ASan's runtime preloaded: run the process "
                                           r"with cuda_emulator.sanitizer.sanitizer_env\(\)"):
        compile_module("__global__ void k(float* x) {}", (), ("k",),
                       flavour=Flavour(sanitize=True))
    np.zeros(1)  # this process is unharmed
