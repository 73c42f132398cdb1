"""The tiled GEMM (kernels/gemm.cu) on the device: every tile configuration, instantiation and
split factor against a float64 NumPy reference (tolerance scaled by K), misaligned pointers,
K = 0, run-to-run and graph-replay bit-identity, and the ops' workspace for split-K."""
import math

import numpy as np
import pytest

from gemm_reference import assert_gemm_close, operands
from gpunet.ops.launchers import gemm
from gpunet.ops.workspace import Workspace

cupy = pytest.importorskip("cupy")
from gpu_arrays import host, misaligned  # noqa: E402  (needs cupy)

pytestmark = pytest.mark.gpu
# (m, n, k, trans_a, trans_b) of a 784-512-512-10 training step at batches 32, 128 and 1024.
TRAINING = [shape for batch in (32, 128, 1024) for n_in, n_out in ((784, 512), (512, 512),
                                                                   (512, 10))
            for shape in ((batch, n_out, n_in, False, True), (n_out, n_in, batch, True, False),
                          (batch, n_in, n_out, False, False))]
SHAPES = [(1, 1, 1), (37, 45, 29), (129, 136, 100), (300, 260, 784)]


def run(p, variant, rng, misalign=False, workspace=None):
    """Fresh operands through plan ``p`` on the device; returns host inputs and the output."""
    trans_a, trans_b, has_bias, relu = variant
    a, b, bias, _ = operands(rng, p.m, p.n, p.k, trans_a, trans_b, has_bias)
    put = misaligned if misalign else cupy.asarray
    dev = [None if x is None else put(x) for x in (a, b, bias)]
    out = put(np.full((p.m, p.n), np.nan, np.float32))
    gemm.run_plan(p, dev[0], dev[1], out, trans_a, trans_b, workspace or Workspace(cupy),
                  dev[2], relu)
    return (a, b, bias), host(out)


@pytest.mark.parametrize("tiles", gemm.CONFIGS, ids=lambda t: f"{t.bm}x{t.bn}")
@pytest.mark.parametrize("variant", gemm.VARIANTS)
def test_every_configuration_instantiation_and_split(tiles, variant):
    rng = np.random.default_rng(0)
    for m, n, k in SHAPES:
        for splits in sorted({1, 2, 5, gemm.filling_plan(tiles, m, n, k, 132).splits}):
            p = gemm.make_plan(tiles, m, n, k, splits)
            (a, b, bias), out = run(p, variant, rng)
            assert_gemm_close(out, a, b, *variant[:2], bias, variant[3], str(p))


@pytest.mark.parametrize("variant", gemm.VARIANTS)
def test_misaligned_pointers_and_k_zero(variant):
    rng = np.random.default_rng(1)
    for tiles in gemm.CONFIGS:
        for splits in (1, 3):
            p = gemm.make_plan(tiles, 70, 68, 256, splits)
            (a, b, bias), out = run(p, variant, rng, misalign=True)
            assert_gemm_close(out, a, b, *variant[:2], bias, variant[3], f"misaligned {p}")
    (a, b, bias), out = run(gemm.plan(5, 7, 0, 132), variant, rng)
    assert_gemm_close(out, a, b, *variant[:2], bias, variant[3], "K = 0")


@pytest.mark.parametrize("m,n,k,trans_a,trans_b", TRAINING)
def test_training_products_on_this_device_repeat_bit_for_bit(m, n, k, trans_a, trans_b):
    variant = (trans_a, trans_b, not trans_a and trans_b, not trans_a and trans_b)
    p = gemm.plan(m, n, k, gemm.sm_count())
    workspace = Workspace(cupy)
    (a, b, bias), first = run(p, variant, np.random.default_rng(2), workspace=workspace)
    assert_gemm_close(first, a, b, trans_a, trans_b, bias, variant[3], str(p))
    _, again = run(p, variant, np.random.default_rng(2), workspace=workspace)
    np.testing.assert_array_equal(again, first)


def test_split_gemm_replays_in_a_cuda_graph_bit_for_bit():
    p = gemm.make_plan(gemm.CONFIGS[-1], 64, 96, 2048, 8)
    rng = np.random.default_rng(3)
    a, b, bias, _ = operands(rng, 64, 96, 2048, False, True, True)
    a, b, bias = cupy.asarray(a), cupy.asarray(b), cupy.asarray(bias)
    out = cupy.full((64, 96), np.nan, dtype=np.float32)
    workspace = Workspace(cupy)
    workspace.pin()
    cupy.cuda.Device().synchronize()
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        gemm.run_plan(p, a, b, out, False, True, workspace, bias, True)
        eager = out.copy()
        out.fill(np.nan)
        stream.begin_capture()
        gemm.run_plan(p, a, b, out, False, True, workspace, bias, True)
        graph = stream.end_capture()
        for _ in range(2):
            out.fill(np.nan)
            graph.launch(stream)
            stream.synchronize()
            np.testing.assert_array_equal(host(out), host(eager))
    workspace.unpin()


def test_ops_pass_their_workspace_for_split_k():
    from gpunet.ops.cupy_ops import CupyOps

    ops = CupyOps()
    ops.gemm_routes = ((math.inf, "tiled"),)
    x, w = cupy.ones((32, 784), np.float32), cupy.ones((256, 784), np.float32)
    out = cupy.empty((32, 256), np.float32)
    assert gemm.plan(32, 256, 784, gemm.sm_count()).splits > 1
    before = len(ops.workspace)
    ops.linear_forward(x, w, cupy.zeros(256, np.float32), out)
    assert (host(out) == 784).all()
    assert len(ops.workspace) == before + 1  # the partial sums


def test_sm_count_is_the_devices():
    attributes = cupy.cuda.Device().attributes
    assert gemm.sm_count() == attributes["MultiProcessorCount"] > 0
