"""The real ``kernels/gemm.cu`` run on the CPU (g++ + tests/cuda_emulator), launched exactly as
the launcher launches it, against a float64 NumPy reference.

Covers every tile configuration with every instantiation the ops use, unsplit and split,
at 1s, odd sizes, K = 0, partial tiles on the float4 path, misaligned pointers (the scalar
path), the plans the launcher picks for training shapes, ReLU's NaN, and the split-K
reduction's fixed order (bit-exact against NumPy adding the partial sums in order).
"""
import itertools

import numpy as np
import pytest

from cuda_emulator import compile_module, compiler
from gemm_reference import assert_gemm_close, operands
from gpunet.ops.launchers import gemm
from gpunet.ops.workspace import Workspace

if compiler() is None:
    pytest.skip("g++ is not installed: the CPU emulation of kernels/gemm.cu cannot be built",
                allow_module_level=True)


@pytest.fixture(scope="module")
def emulator():
    return compile_module(gemm.SOURCE.read(), gemm.SOURCE.options, gemm.SOURCE.kernels)


def check(emulator, p, trans_a, trans_b, has_bias, relu, rng, offset=0, workspace=None):
    """Run plan ``p`` on fresh operands through the emulator and compare with NumPy; returns
    the output and the workspace."""
    a, b, bias, out = operands(rng, p.m, p.n, p.k, trans_a, trans_b, has_bias, offset)
    out[...] = np.nan  # an output the kernel fails to write stays NaN
    workspace = workspace or Workspace(np)
    emulator.run(gemm.launches(p, a, b, out, trans_a, trans_b, workspace, bias, relu))
    assert_gemm_close(out, a, b, trans_a, trans_b, bias, relu, str(p))
    return out, workspace


def shapes_for(tiles):
    """1s, odd sizes, and partial tiles on the float4 path (K, N multiples of 4)."""
    return [(1, 1, 1), (37, 45, 29), (tiles.bm + 3, tiles.bn + 8, 3 * tiles.bk + 4)]


@pytest.mark.parametrize("tiles", gemm.CONFIGS, ids=lambda t: f"{t.bm}x{t.bn}")
@pytest.mark.parametrize("variant", gemm.VARIANTS, ids=lambda v: "".join(
    tag for tag, on in zip(("TA", "TB", "bias", "relu"), v) if on) or "NN")
def test_every_configuration_and_instantiation(emulator, tiles, variant):
    rng = np.random.default_rng(0)
    for m, n, k in shapes_for(tiles):
        for splits in (1, 3):
            check(emulator, gemm.make_plan(tiles, m, n, k, splits), *variant, rng)


@pytest.mark.parametrize("variant", gemm.VARIANTS)
def test_k_zero_gives_bias_or_zeros(emulator, variant):
    out, _ = check(emulator, gemm.plan(5, 7, 0, 132), *variant, np.random.default_rng(1))
    if not variant[2]:
        assert (out == 0).all()


@pytest.mark.parametrize("offset", [1, 2, 3])
@pytest.mark.parametrize("tiles", gemm.CONFIGS, ids=lambda t: f"{t.bm}x{t.bn}")
def test_misaligned_pointers_take_the_scalar_path(emulator, tiles, offset):
    rng = np.random.default_rng(offset)
    for variant in gemm.VARIANTS:
        for splits in (1, 2):
            check(emulator, gemm.make_plan(tiles, tiles.bm + 4, tiles.bn + 4, 4 * tiles.bk,
                                           splits), *variant, rng, offset=offset)


# (m, n, k, sms): the launcher's own choice, covering each configuration and split factors.
PLANNED = [(128, 256, 784, 132), (32, 256, 784, 132), (256, 784, 128, 132), (10, 256, 1024, 132),
           (128, 10, 256, 132), (1024, 256, 10, 132), (96, 100, 333, 1), (128, 128, 64, 4),
           (300, 260, 700, 16), (129, 257, 1000, 132)]


def test_the_launchers_plans_for_training_shapes(emulator):
    rng = np.random.default_rng(2)
    seen = set()
    for (m, n, k, sms), variant in zip(PLANNED, itertools.cycle(gemm.VARIANTS)):
        p = gemm.plan(m, n, k, sms)
        seen.add((p.tiles, p.splits > 1))
        check(emulator, p, *variant, rng)
    assert seen == {(t, split) for t in gemm.CONFIGS for split in (False, True)}, seen


def test_relu_keeps_nan_split_or_not(emulator):
    for splits in (1, 4):
        p = gemm.make_plan(gemm.CONFIGS[-1], 6, 9, 256, splits)
        a, b, bias, out = operands(np.random.default_rng(3), 6, 9, 256, False, True, True)
        a[2, 5] = np.nan
        emulator.run(gemm.launches(p, a, b, out, False, True, Workspace(np), bias, True))
        assert np.isnan(out[2]).all() and not np.isnan(np.delete(out, 2, axis=0)).any()


def test_split_k_adds_the_partials_in_order_and_repeats_bit_for_bit(emulator):
    rng = np.random.default_rng(4)
    p = gemm.make_plan(gemm.CONFIGS[1], 70, 50, 1000, 5)
    out, workspace = check(emulator, p, False, True, True, True, rng)
    partials = workspace.get(f"gemm_partials_{p.m}x{p.n}", p.partials_shape, np.float32)
    a, b, bias, again = operands(np.random.default_rng(4), 70, 50, 1000, False, True, True)
    emulator.run(gemm.launches(p, a, b, again, False, True, workspace, bias, True))
    np.testing.assert_array_equal(again, out)
    total = partials[0].copy()
    for part in partials[1:]:
        total += part
    np.testing.assert_array_equal(out, np.maximum(total + bias, np.float32(0)))
