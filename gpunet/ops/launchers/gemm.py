"""Launcher of ``kernels/gemm.cu``: the register-tiled SGEMM with a bias+ReLU epilogue and
deterministic split-K (no cuBLAS, so it can be captured in a CUDA graph).

How a shape is served (:func:`plan`, a pure function of ``(m, n, k)`` and the SM count):

- Three tile configurations, largest first: 128x128 (8x8 outputs per thread, the most work per
  byte of shared memory), 64x64 and 32x32 (4x4 per thread: more blocks for small outputs).
- A configuration is skipped when its tiles cover more than ``MAX_PADDING`` times the output
  (e.g. 128-wide tiles for a 10-column layer: most of each block's work would be thrown away).
- A wave is one block per SM; every configuration fits at least two blocks on an SM, so a grid
  a little over one wave still runs in one. The first configuration whose grid fills
  ``WAVE_FILL`` of a wave wins, after splitting K as far as needed to get there: never more
  than ``MAX_SPLITS`` ways, nor into ranges shorter than ``MIN_SPLIT_K`` (a split's partial
  sums cost a write and a read of M x N floats, worth it only over enough K). When none fills,
  the smallest configuration takes the most splits the limits allow (the weight gradient
  ``dZ^T X``, whose K is the batch, and the first layer's forward at small batch land here).
- A split GEMM writes ``(splits, m, n)`` partial sums into a workspace buffer, then
  ``split_k_reduce`` adds them in a fixed order and applies bias + ReLU: no atomics, so the
  result is bit-identical run to run. The buffer comes from the caller's Workspace, so its
  address stays the same across CUDA-graph replays.

Not yet tuned on a device: ``benchmarks/graph_probe.py`` times each configuration.
NumPy reference: ``NumpyOps.linear_forward`` / ``linear_relu_forward`` / ``linear_backward``.
Tests: tests/test_gemm_plan.py, tests/test_gemm_emulated.py, tests/test_gpu_gemm.py.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ..kernels import THREADS, KernelSource, blocks, flag

SHARED_PAD = 4      # floats of padding per shared tile row (a multiple of 4: float4 reads)
MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y (the column tiles)
MAX_GRID_Z = 65535  # and on gridDim.z (the batches times the splits of K)
WAVE_FILL = 0.75    # a grid with this many blocks per SM counts as filling the device
MIN_SPLIT_K = 64    # no split-K range shorter than this
MAX_SPLITS = 16     # at most this many partial sums per output
MAX_PADDING = 2.0   # skip tiles covering more than this multiple of the output's area


@dataclass(frozen=True)
class Tiles:
    """One block tile configuration: ``bm x bn`` outputs, ``bk`` deep, ``tm x tn`` per thread."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    @property
    def threads(self) -> int:
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def shared_bytes(self) -> int:
        """Static shared memory of a block: two buffers of both slices."""
        return 2 * self.bk * (self.bm + self.bn + 2 * SHARED_PAD) * 4


CONFIGS = (Tiles(128, 128, 8, 8, 8), Tiles(64, 64, 16, 4, 4), Tiles(32, 32, 16, 4, 4))

# The (trans_a, trans_b, has_bias, relu) instantiations the ops use; a split GEMM's first pass
# uses the (trans_a, trans_b, False, False) one, which each transpose pair has.
VARIANTS = tuple([(False, True, bias, relu) for bias in (True, False) for relu in (True, False)]
                 + [(True, False, False, False), (False, False, False, False)])
EPILOGUES = tuple((bias, relu) for bias in (True, False) for relu in (True, False))


def name(tiles: Tiles, trans_a: bool, trans_b: bool, has_bias: bool, relu: bool) -> str:
    """The name expression of one GEMM instantiation."""
    sizes = (tiles.bm, tiles.bn, tiles.bk, tiles.tm, tiles.tn)
    flags = (flag(f) for f in (trans_a, trans_b, has_bias, relu))
    return f"gemm_tiled<{', '.join(map(str, sizes))}, {', '.join(flags)}>"


def reduce_name(has_bias: bool, relu: bool) -> str:
    """The name expression of one split-K reduction."""
    return f"split_k_reduce<{flag(has_bias)}, {flag(relu)}>"


SOURCE = KernelSource(
    "gemm",
    kernels=tuple(name(t, *v) for t in CONFIGS for v in VARIANTS)
    + tuple(reduce_name(*e) for e in EPILOGUES),
    defines=(("SHARED_PAD", SHARED_PAD), ("REDUCE_THREADS", THREADS)),
)


@dataclass(frozen=True)
class Plan:
    """How one (m, n, k) product runs: a tile configuration and a split of K; ``batches``
    such products at once (a stack's models: one per model, one launch)."""

    m: int
    n: int
    k: int
    tiles: Tiles
    splits: int
    k_per_split: int
    batches: int = 1

    @property
    def grid(self) -> tuple[int, int, int]:
        return (_ceil_div(self.m, self.tiles.bm), _ceil_div(self.n, self.tiles.bn),
                self.splits * self.batches)

    @property
    def blocks(self) -> int:
        rows, cols, depth = self.grid
        return rows * cols * depth

    @property
    def partials_shape(self) -> tuple[int, int, int] | None:
        """The workspace buffer of partial sums, None when K is not split."""
        return (self.batches * self.splits, self.m, self.n) if self.splits > 1 else None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def make_plan(tiles: Tiles, m: int, n: int, k: int, splits: int, batches: int = 1) -> Plan:
    """A plan with K cut into at most ``splits`` ranges of whole ``bk`` slices, none empty."""
    if splits <= 1:
        return Plan(m, n, k, tiles, 1, k, batches)
    per_split = _ceil_div(_ceil_div(k, splits), tiles.bk) * tiles.bk
    return Plan(m, n, k, tiles, _ceil_div(k, per_split), per_split, batches)


def filling_plan(tiles: Tiles, m: int, n: int, k: int, sms: int, batches: int = 1) -> Plan:
    """``tiles`` with K split as far as needed to fill ``WAVE_FILL`` of a wave of ``sms`` SMs,
    within ``MAX_SPLITS``, ``MIN_SPLIT_K`` and the grid's depth (``batches`` products)."""
    target = max(1, math.ceil(WAVE_FILL * sms))
    max_splits = max(1, min(MAX_SPLITS, k // MIN_SPLIT_K, MAX_GRID_Z // batches))
    count = _ceil_div(m, tiles.bm) * _ceil_div(n, tiles.bn) * batches
    return make_plan(tiles, m, n, k, min(max_splits, _ceil_div(target, count)), batches)


def plan(m: int, n: int, k: int, sms: int, batches: int = 1) -> Plan:
    """The configuration and split for an (m x k) @ (k x n) product (m, n >= 1), or
    ``batches`` of them, on ``sms`` SMs: the first configuration that fills a wave without
    too much padding, else the smallest (see the module's text for the reasoning)."""
    for tiles in CONFIGS:
        padded = _ceil_div(m, tiles.bm) * tiles.bm * _ceil_div(n, tiles.bn) * tiles.bn
        chosen = filling_plan(tiles, m, n, k, sms, batches)
        if padded <= MAX_PADDING * m * n and chosen.blocks >= math.ceil(WAVE_FILL * sms):
            return chosen
    return filling_plan(CONFIGS[-1], m, n, k, sms, batches)


def can_launch(m: int, n: int, batches: int = 1) -> bool:
    """Whether an (m, n) output (``batches`` of them) makes a launchable grid with every
    configuration (not empty, not too many column tiles for the narrowest tiles)."""
    return (m > 0 and 0 < _ceil_div(n, min(t.bn for t in CONFIGS)) <= MAX_GRID_Y
            and 0 < batches <= MAX_GRID_Z)


def launches(p: Plan, a, b, out, trans_a: bool, trans_b: bool, workspace, bias=None,
             relu: bool = False) -> list:
    """The ``(kernel name, grid, block, args)`` launches that compute ``p`` (one, or two with
    split-K: the partial sums go to ``workspace``'s ``gemm_partials_MxN`` buffer). With
    ``p.batches`` > 1, ``a``, ``b``, ``out`` (and ``bias``) hold one C-contiguous operand
    per product along their first axis."""
    m, n, k = (np.int32(v) for v in (p.m, p.n, p.k))
    block = (p.tiles.threads, 1, 1)
    batched = p.batches > 1
    strides = tuple(np.int32(s if batched else 0) for s in (p.m * p.k, p.k * p.n, p.n))
    if p.partials_shape is None:
        kernel = name(p.tiles, trans_a, trans_b, bias is not None, relu)
        epilogue_bias = out if bias is None else bias
        return [(kernel, p.grid, block,
                 (a, b, epilogue_bias, out, m, n, k, k, np.int32(1), *strides))]
    partials = workspace.get(f"gemm_partials_{p.m}x{p.n}", p.partials_shape, np.float32)
    return [
        (name(p.tiles, trans_a, trans_b, False, False), p.grid, block,
         (a, b, partials, partials, m, n, k, np.int32(p.k_per_split), np.int32(p.splits),
          *strides)),
        (reduce_name(bias is not None, relu), (blocks(p.batches * p.m * p.n), 1, 1),
         (THREADS, 1, 1), (partials, partials if bias is None else bias, out, m, n,
                           np.int32(p.splits), np.int32(p.batches), strides[2])),
    ]


@functools.lru_cache(maxsize=None)
def _sm_count(device_id: int) -> int:
    import cupy

    return cupy.cuda.Device(device_id).attributes["MultiProcessorCount"]


def sm_count() -> int:
    """The current device's multiprocessor count (asked once per device)."""
    import cupy

    return _sm_count(cupy.cuda.Device().id)


def run_plan(p: Plan, a, b, out, trans_a: bool, trans_b: bool, workspace, bias=None,
             relu: bool = False):
    """Launch :func:`launches` on the current stream; returns ``out``."""
    for kernel, grid, block, args in launches(p, a, b, out, trans_a, trans_b, workspace, bias,
                                              relu):
        SOURCE.function(kernel)(grid, block, args)
    return out


def gemm(a, b, out, trans_a: bool, trans_b: bool, workspace, bias=None, relu: bool = False,
         sms: int | None = None):
    """``out = act(op(a) @ op(b) + bias)`` (C-contiguous float32 CuPy arrays; 3-D: one
    product per entry of the first axis, a stack's models, ``bias`` then 2-D); ``workspace``
    (a Workspace) holds split-K partial sums; ``sms`` overrides the device's SM count."""
    m, n = out.shape[-2:]
    k = a.shape[-2] if trans_a else a.shape[-1]
    batches = out.shape[0] if out.ndim == 3 else 1
    p = plan(m, n, k, sm_count() if sms is None else sms, batches)
    return run_plan(p, a, b, out, trans_a, trans_b, workspace, bias, relu)
