"""The real ``kernels/gemm.cu`` batched over a stack's models (one launch for every model's
product), run on the CPU (g++ + tests/cuda_emulator) as the launcher launches it, against a
float64 NumPy reference per product: every instantiation, split and unsplit, each model with
its own bias row."""
import numpy as np
import pytest

from cuda_emulator import compile_module, compiler
from gemm_reference import assert_gemm_close
from gpunet.ops.launchers import gemm
from gpunet.ops.workspace import Workspace

if compiler() is None:
    pytest.skip("g++ is not installed: the CPU emulation of kernels/gemm.cu cannot be built",
                allow_module_level=True)


@pytest.fixture(scope="module")
def emulator():
    return compile_module(gemm.SOURCE.read(), gemm.SOURCE.options, gemm.SOURCE.kernels)


def _operands(rng, batches, m, n, k, trans_a, trans_b, has_bias, _relu):
    shape_a = (batches, k, m) if trans_a else (batches, m, k)
    shape_b = (batches, n, k) if trans_b else (batches, k, n)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    bias = rng.standard_normal((batches, n)).astype(np.float32) if has_bias else None
    return a, b, bias, np.full((batches, m, n), np.nan, np.float32)


@pytest.mark.parametrize("variant", gemm.VARIANTS, ids=lambda v: "".join(
    tag for tag, on in zip(("TA", "TB", "bias", "relu"), v) if on) or "NN")
@pytest.mark.parametrize("splits", [1, 3])
def test_every_model_gets_its_own_product_and_bias(emulator, variant, splits):
    rng = np.random.default_rng(splits)
    batches, m, n, k = 3, 37, 45, 3 * 16 + 4
    a, b, bias, out = _operands(rng, batches, m, n, k, *variant)
    p = gemm.make_plan(gemm.CONFIGS[-1], m, n, k, splits, batches)
    assert p.grid[2] == batches * p.splits
    emulator.run(gemm.launches(p, a, b, out, *variant[:2], Workspace(np),
                               bias if variant[2] else None, variant[3]))
    for i in range(batches):
        assert_gemm_close(out[i], a[i], b[i], *variant[:2],
                          bias[i] if variant[2] else None, variant[3], f"model {i}")


def test_the_plan_counts_every_models_blocks_toward_a_wave():
    one = gemm.plan(128, 64, 64, 132)
    many = gemm.plan(128, 64, 64, 132, batches=64)
    assert many.batches == 64 and many.blocks == 64 * many.blocks // many.batches
    assert many.splits <= one.splits  # 64 products fill the device without splitting K
    assert gemm.plan(8, 8, 4096, 4, batches=40000).grid[2] <= gemm.MAX_GRID_Z
    assert not gemm.can_launch(8, 8, batches=gemm.MAX_GRID_Z + 1)
