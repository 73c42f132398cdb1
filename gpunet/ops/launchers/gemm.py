"""Launcher of ``kernels/gemm.cu``: the tiled GEMM with a bias+ReLU epilogue (no cuBLAS).

NumPy reference: ``NumpyOps.linear_forward`` / ``linear_relu_forward`` / ``linear_backward``
(``x @ W.T + b``, ``dZ.T @ X``, ``dZ @ W``). Tests: tests/test_cupy_ops.py (the ``tiled``
route of ``test_linear_forward`` and ``test_linear_backward``), tests/test_gpu_path.py.
"""
from __future__ import annotations

import numpy as np

from ..kernels import KernelSource, flag

TILE = 64          # a block computes a TILE x TILE tile of the output
TILE_K = 16        # K advances TILE_K at a time through shared memory
THREADS_SIDE = 16  # block of THREADS_SIDE x THREADS_SIDE threads
MAX_GRID_Y = 65535  # CUDA's limit on gridDim.y (the column tiles)

# The (trans_a, trans_b, has_bias, relu) instantiations the ops use.
VARIANTS = tuple([(False, True, bias, relu) for bias in (True, False) for relu in (True, False)]
                 + [(True, False, False, False), (False, False, False, False)])


def name(trans_a: bool, trans_b: bool, has_bias: bool, relu: bool) -> str:
    """The name expression of one instantiation."""
    return f"gemm_bias_act<{', '.join(flag(f) for f in (trans_a, trans_b, has_bias, relu))}>"


SOURCE = KernelSource(
    "gemm",
    kernels=tuple(name(*v) for v in VARIANTS),
    defines=(("TILE", TILE), ("TILE_K", TILE_K), ("THREADS_SIDE", THREADS_SIDE)),
)


def grid(m: int, n: int) -> tuple[int, int]:
    """Blocks for an (m, n) output."""
    return -(-m // TILE), -(-n // TILE)


def can_launch(m: int, n: int) -> bool:
    """Whether an (m, n) output makes a launchable grid (not empty, not too many columns)."""
    rows, cols = grid(m, n)
    return rows > 0 and 0 < cols <= MAX_GRID_Y


def gemm(a, b, out, trans_a: bool, trans_b: bool, bias=None, relu: bool = False):
    """``out = act(op(a) @ op(b) + bias)`` in one launch (C-contiguous float32 arrays)."""
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    kernel = SOURCE.function(name(trans_a, trans_b, bias is not None, relu))
    kernel(grid(m, n), (THREADS_SIDE, THREADS_SIDE),
           (a, b, out if bias is None else bias, out, np.int32(m), np.int32(n), np.int32(k)))
    return out
