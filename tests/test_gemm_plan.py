"""The tiled GEMM's choice of tile configuration and split-K (a pure function of the shape and
the SM count): every shape gets a launchable grid, K splits into non-empty ranges, the
workspace holds exactly the partial sums, and the training shapes get the intended plans."""
import itertools

import numpy as np
import pytest

from gpunet.ops.kernels import THREADS
from gpunet.ops.launchers import gemm
from gpunet.ops.workspace import Workspace

SIZES = (1, 2, 3, 10, 31, 32, 33, 100, 128, 256, 784, 1000, 4096, 65536)
H200_SMS = 132


@pytest.mark.parametrize("sms", [1, 8, H200_SMS])
def test_every_shape_gets_a_launchable_plan_whose_splits_cover_k(sms):
    for m, n, k in itertools.product(SIZES, SIZES, (0,) + SIZES):
        p = gemm.plan(m, n, k, sms)
        assert p == gemm.plan(m, n, k, sms)
        rows, cols, splits = p.grid
        assert rows >= 1 and cols >= 1 and 1 <= splits <= gemm.MAX_SPLITS
        assert rows < 2**31 and cols <= gemm.MAX_GRID_Y and p.tiles in gemm.CONFIGS
        assert rows * p.tiles.bm >= m and cols * p.tiles.bn >= n
        if splits == 1:
            assert p.k_per_split == k and p.partials_shape is None
            continue
        assert p.k_per_split % p.tiles.bk == 0 and p.k_per_split >= gemm.MIN_SPLIT_K
        starts = [z * p.k_per_split for z in range(splits)]
        assert starts[-1] < k <= starts[-1] + p.k_per_split, "an empty or missing range"
        assert p.partials_shape == (splits, m, n)


def test_configurations_fit_a_block():
    for tiles in gemm.CONFIGS:
        assert tiles.threads <= 1024 and tiles.threads % 32 == 0
        assert tiles.shared_bytes <= 48 * 1024
        assert tiles.tm % 4 == 0 and tiles.tn % 4 == 0 and tiles.bk % 4 == 0
        assert (tiles.bk * tiles.bm) % (4 * tiles.threads) == 0  # whole float4s per thread
        assert (tiles.bk * tiles.bn) % (4 * tiles.threads) == 0
    assert [t.bm * t.bn for t in gemm.CONFIGS] == sorted((t.bm * t.bn for t in gemm.CONFIGS),
                                                         reverse=True), "largest first"


@pytest.mark.parametrize("m,n,k,bm,splits", [
    (65536, 512, 784, 128, 1),   # big forward: large tiles, many waves
    (65536, 784, 512, 128, 1),   # big input grad
    (4096, 512, 784, 128, 1),    # one wave without splitting
    (1024, 512, 784, 128, 4),    # a quarter wave of large tiles, K split to fill it
    (128, 256, 784, 32, 4),      # first layer at batch 128: small tiles, split
    (32, 256, 784, 32, 10),      # first layer at batch 32: as far as MIN_SPLIT_K allows
    (256, 784, 128, 64, 2),      # first layer's weight grad at batch 128
    (512, 784, 65536, 128, 4),   # weight grad at batch 65536: large tiles, split
    (10, 256, 1024, 32, 13),     # last layer's weight grad: 10 rows, K = batch
    (1024, 256, 10, 32, 1),      # K = 10 (input grad of the last layer): no split
    (128, 10, 256, 32, 4),       # 10 columns: large tiles would be mostly padding
])
def test_training_shapes_on_an_h200(m, n, k, bm, splits):
    p = gemm.plan(m, n, k, H200_SMS)
    assert (p.tiles.bm, p.splits) == (bm, splits), p


def test_split_plans_cut_k_into_whole_slices():
    tiles = gemm.CONFIGS[0]
    assert gemm.make_plan(tiles, 5, 5, 100, 3).k_per_split == 40   # ceil(100/3) -> 34 -> 40
    assert gemm.make_plan(tiles, 5, 5, 100, 3).splits == 3
    assert gemm.make_plan(tiles, 5, 5, 17, 4).splits == 3          # 8 + 8 + 1: none empty
    assert gemm.make_plan(tiles, 5, 5, 0, 1).k_per_split == 0


def test_can_launch_refuses_empty_and_too_wide_outputs():
    narrowest = min(t.bn for t in gemm.CONFIGS)
    assert gemm.can_launch(1, 1)
    assert not gemm.can_launch(0, 5) and not gemm.can_launch(5, 0)
    assert gemm.can_launch(3, narrowest * gemm.MAX_GRID_Y)
    assert not gemm.can_launch(3, narrowest * gemm.MAX_GRID_Y + 1)


def test_launches_use_one_workspace_buffer_per_output_shape():
    ws = Workspace(np)
    a, b = np.zeros((64, 4096), np.float32), np.zeros((4096, 48), np.float32)
    out, bias = np.zeros((64, 48), np.float32), np.zeros(48, np.float32)
    p = gemm.plan(64, 48, 4096, H200_SMS)
    assert p.splits > 1
    first = gemm.launches(p, a, b, out, False, False, ws, bias, True)
    again = gemm.launches(p, a, b, out, False, False, ws, bias, True)
    assert [launch[0] for launch in first] == [
        gemm.name(p.tiles, False, False, False, False), gemm.reduce_name(True, True)]
    partials = first[0][3][2]
    assert partials.shape == p.partials_shape and again[0][3][2] is partials
    assert first[1][2] == (THREADS, 1, 1) and first[1][3][0] is partials
    assert len(ws) == 1
    single = gemm.launches(gemm.make_plan(p.tiles, 64, 48, 4096, 1), a, b, out, False, False,
                           ws, bias, True)
    assert len(single) == 1 and single[0][3][3] is out and len(ws) == 1


def test_every_instantiation_is_listed_once():
    kernels = gemm.SOURCE.kernels
    assert len(kernels) == len(set(kernels)) == \
        len(gemm.CONFIGS) * len(gemm.VARIANTS) + len(gemm.EPILOGUES)
    for tiles in gemm.CONFIGS:
        for trans_a, trans_b, _, _ in gemm.VARIANTS:  # a split's first pass exists for each
            assert gemm.name(tiles, trans_a, trans_b, False, False) in kernels
