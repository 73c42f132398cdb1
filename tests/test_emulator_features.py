"""The CUDA emulator runs each feature kernels/*.cu uses as a GPU does: launch coordinates in
3-D, warp shuffles, atomics, shared memory per block, math and bit casts, float4, every
scalar width, dynamic shared memory; in every schedule (tests/emulator_kernels/features.cu).
"""
import numpy as np
import pytest

from cuda_emulator import Flavour, scheduled
from emulator_support import load_test_kernels, require_compiler

require_compiler()

MODES = ["sequential", "shuffled", "concurrent"]


@pytest.fixture(scope="module")
def features():
    return load_test_kernels(
        "features.cu", "coordinates", "shuffles<float>", "shuffles<int>", "shuffles<double>",
        "shuffles<long long>", "warp_sums", "atomics", "shared_per_block", "math_functions",
        "scale4", "widths", "reverse_dynamic", "unwritten_shared")


@pytest.fixture(params=MODES)
def mode(request):
    with scheduled(request.param, seed=7):
        yield request.param


@pytest.mark.parametrize("grid, block", [((2, 3, 2), (4, 2, 3)), ((5, 1, 1), (64, 1, 1)),
                                         ((1, 2, 1), (1, 1, 8))])
def test_every_thread_runs_once_with_its_3d_coordinates(features, mode, grid, block):
    threads = int(np.prod(grid) * np.prod(block))
    out = np.full(6 * threads, 2**32 - 1, np.uint32)
    features.launch("coordinates", grid, block, (out,))
    got = out.reshape(-1, 6)
    bz, by, bx, tz, ty, tx = np.meshgrid(*(np.arange(n) for n in (*grid[::-1], *block[::-1])),
                                         indexing="ij")
    expected = np.stack([a.ravel() for a in (tx, ty, tz, bx, by, bz)], axis=1)
    np.testing.assert_array_equal(got, expected)


def expected_shuffles(v, operand, width):
    """CUDA's shuffle results, lane by lane, for one warp's values ``v``."""
    lanes = np.arange(32)
    segment = lanes // width * width
    xor = lanes ^ operand
    down, up = lanes + operand, lanes - operand
    sources = [np.where(xor < segment + width, xor, lanes),
               np.where(down < segment + width, down, lanes),
               np.where(up >= segment, up, lanes),
               segment + operand % width]
    return np.stack([v[s] for s in sources], axis=1)


@pytest.mark.parametrize("dtype, name", [(np.float32, "float"), (np.int32, "int"),
                                         (np.float64, "double"), (np.int64, "long long")])
@pytest.mark.parametrize("operand, width", [(1, 32), (5, 32), (16, 32), (3, 8), (1, 2),
                                            (16, 8), (9, 4)])
def test_shuffles_exchange_within_the_warp(features, mode, dtype, name, operand, width):
    values = (np.arange(64) * 3 - 50).astype(dtype)
    out = np.zeros(4 * 64, dtype)
    features.launch(f"shuffles<{name}>", 1, 64, (values, out, np.int32(operand),
                                                 np.int32(width)))
    for warp in range(2):
        v = values[32 * warp:32 * (warp + 1)]
        np.testing.assert_array_equal(out.reshape(64, 4)[32 * warp:32 * (warp + 1)],
                                      expected_shuffles(v, operand, width))


def test_a_butterfly_gives_every_lane_the_warp_sum(features, mode):
    values = np.random.default_rng(0).standard_normal(256).astype(np.float32)
    sums, counts = np.zeros(256, np.float32), np.zeros(256, np.int32)
    features.launch("warp_sums", 2, 128, (values, sums, counts))
    per_warp = values.reshape(8, 32)
    np.testing.assert_allclose(sums.reshape(8, 32), per_warp.sum(1, keepdims=True)
                               .repeat(32, 1), rtol=1e-5)
    np.testing.assert_array_equal(counts.reshape(8, 32)[:, 0], (per_warp > 0).sum(1))
    assert (sums.reshape(8, 32) == sums.reshape(8, 32)[:, :1]).all()  # bit-identical lanes


def test_atomics(features, mode):
    blocks, threads = 3, 64
    n = blocks * threads
    i32 = np.array([0, 0, 0, 0, 0], np.int32)
    u32 = np.array([0, 0, 0, 2**32 - 1, 0], np.uint32)
    u64 = np.array([0, 2**64 - 1, 0], np.uint64)
    i64 = np.array([0, 0], np.int64)
    f32, f64 = np.zeros(1, np.float32), np.zeros(1, np.float64)
    previous = np.full(n, -1, np.int32)
    features.launch("atomics", blocks, threads, (i32, u32, u64, i64, f32, f64, previous))
    np.testing.assert_array_equal(i32[:4], [n, -2 * n, -(n - 1), n - 1])
    np.testing.assert_array_equal(u32, [n, n % 5, 2**32 - 1, 0, n % 2])
    np.testing.assert_array_equal(u64, [3 * n, 1000, (n - 1) << 40])
    np.testing.assert_array_equal(i64, [-(n - 1), n - 1])
    assert f32[0] == 0.5 * n and f64[0] == 0.25 * n
    advanced = previous == np.arange(n)  # atomicCAS returned the value it replaced
    assert i32[4] == advanced.sum()
    if mode == "sequential":
        assert advanced.all()


def test_each_resident_block_has_its_own_shared_memory(features, mode):
    blocks = 12
    out, ticket = np.full(blocks * 64, -1, np.int32), np.zeros(1, np.uint32)
    features.launch("shared_per_block", blocks, 64, (out, ticket))
    np.testing.assert_array_equal(out.reshape(blocks, 64), np.tile((np.arange(64) + 1) % 64,
                                                                   (blocks, 1)))
    assert ticket[0] == blocks * 64
    stats = features.last_stats
    if mode == "concurrent":  # the blocks really overlapped
        assert stats.max_resident == 4 and stats.preemptions > 0 and stats.interleavings > 0
    else:
        assert stats.max_resident == 1 and stats.interleavings == 0


def test_math_functions_and_bit_casts(features):
    x = np.array([-3.5, -1.0, -0.0, 0.0, 1e-3, 0.5, 2.0, 88.0], np.float32)
    y = np.array([1, 2, 10, 100, 1000, 5000, 20000, 1e6], np.float64)
    f, d = np.zeros(8 * 8, np.float32), np.zeros(2 * 8, np.float64)
    features.launch("math_functions", 1, 32, (x, f, y, d, np.int32(8)))
    f = f.reshape(8, 8)
    np.testing.assert_allclose(f[:, 0], np.exp(x), rtol=1e-6)
    np.testing.assert_allclose(f[:, 1], np.log(np.abs(x) + 1), rtol=1e-6)
    np.testing.assert_array_equal(f[:, 2], np.maximum(x, np.float32(0.25)))
    np.testing.assert_allclose(f[:, 3], np.sqrt(np.abs(x)), rtol=1e-7)
    np.testing.assert_array_equal(f[:, 4].view(np.int32), (-x).view(np.int32))
    assert (f[:, 5] == -np.inf).all() and np.isnan(f[:, 6]).all()
    np.testing.assert_array_equal(f[:, 7], x.view(np.int32).astype(np.float32))
    np.testing.assert_allclose(d.reshape(8, 2), np.stack(
        [0.9 ** y, np.sqrt(1 - 0.999 ** y)], axis=1), rtol=1e-15)


@pytest.mark.parametrize("offset", [0, 1])
def test_float4_path_where_aligned_scalars_elsewhere(features, mode, offset):
    base = np.arange(1 + 1030, dtype=np.float32)
    src = base[offset:offset + 1029]
    out = np.full(1029 + 1, np.nan, np.float32)[offset:offset + 1029]
    aligned = src.ctypes.data % 16 == 0 and out.ctypes.data % 16 == 0
    n4 = 1029 // 4 if aligned else 0
    features.launch("scale4", 3, 128, (src, out, np.int64(1029), np.int64(n4), np.float32(2)))
    np.testing.assert_array_equal(out, src * 2)
    assert aligned == (offset == 0)


def test_every_scalar_width_arrives_intact(features):
    out = np.zeros(11, np.float64)
    values = (np.int8(-128), np.int16(-32768), np.int32(-2**31), -2**63, np.uint8(255),
              np.uint16(65535), np.uint32(2**32 - 1), np.uint64(2**64 - 1), np.float32(1.5),
              1e300, True)
    features.launch("widths", 1, 1, (out, *values))
    np.testing.assert_array_equal(out, [float(v) for v in values])


def test_dynamic_shared_memory(features, mode):
    values = np.arange(96 * 4, dtype=np.float32)
    out = np.zeros_like(values)
    features.launch("reverse_dynamic", 4, 96, (values, out), shared_mem=96 * 4)
    np.testing.assert_array_equal(out.reshape(4, 96), values.reshape(4, 96)[:, ::-1])


def test_unwritten_shared_memory_reads_as_nan(features):
    out = np.zeros(32, np.float32)
    features.launch("unwritten_shared", 1, 32, (out,))
    assert np.isnan(out).all()


def test_ucontext_fibers_run_the_same_kernels():
    """The portable fiber switch (swapcontext, used off x86-64) is built and run here too."""
    module = load_test_kernels("features.cu", "warp_sums", "shared_per_block",
                               flavour=Flavour(fibers="ucontext"))
    values = np.arange(64, dtype=np.float32) - 20
    sums, counts = np.zeros(64, np.float32), np.zeros(64, np.int32)
    with scheduled("concurrent", seed=3):
        module.launch("warp_sums", 2, 32, (values, sums, counts))
        out, ticket = np.zeros(6 * 64, np.int32), np.zeros(1, np.uint32)
        module.launch("shared_per_block", 6, 64, (out, ticket))
    np.testing.assert_array_equal(sums.reshape(2, 32)[:, 0], values.reshape(2, 32).sum(1))
    np.testing.assert_array_equal(out.reshape(6, 64)[:, 0], np.ones(6))
