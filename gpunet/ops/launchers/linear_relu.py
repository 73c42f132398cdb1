"""Launcher of ``kernels/linear_relu.cu``: the bias+ReLU epilogue and the fused backward mask.

NumPy references: ``NumpyOps.linear_relu_forward`` (after the GEMM) and
``NumpyOps.linear_relu_backward`` / ``linear_backward`` (mask and bias gradient).
Tests: tests/test_cupy_ops.py (``test_linear_forward``, ``test_linear_backward``).
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels import KernelSource, blocks, flag, vector_count, THREADS

BIAS_GRAD_COLS = 32    # BW: columns per backward block (one warp wide)
BIAS_GRAD_ROWS = 8     # BR: rows of threads per backward block
MAX_BIAS_PARTS = 128   # row-blocks of partial bias sums (fixed per shape: deterministic)

SOURCE = KernelSource(
    "linear_relu",
    kernels=("bias_act_inplace<true, true>", "bias_act_inplace<true, false>",
             "bias_act_inplace<false, true>",
             "mask_bias_grad_partial<true>", "mask_bias_grad_partial<false>", "sum_partials"),
    defines=(("BW", BIAS_GRAD_COLS), ("BR", BIAS_GRAD_ROWS)),
)


def bias_act(out, bias, relu: bool) -> None:
    """In place ``out = act(out + bias)`` over a C-contiguous (rows, cols) float32 array, or
    (models, rows, cols) with ``bias`` (models, cols): each model its own bias row; ``bias``
    may be None (then ``relu`` must be True)."""
    n, cols = out.size, out.shape[-1]
    per_bias = out.shape[-2] * cols if bias is not None and bias.ndim > 1 else n
    aligned = [out] + ([bias] if bias is not None else [])
    n4 = vector_count(n, *aligned) if cols % 4 == 0 else 0
    kernel = SOURCE.function(f"bias_act_inplace<{flag(bias is not None)}, {flag(relu)}>")
    kernel((blocks(n4 + n - 4 * n4),), (THREADS,),
           (out, out if bias is None else bias, np.int64(n), np.int64(n4), np.int64(cols),
            np.int64(max(per_bias, 1))))


def mask_bias_grad(grad_out, saved_out, grad_z, grad_bias, workspace) -> None:
    """``grad_z = grad_out * (saved_out > 0)`` (only when ``saved_out`` is given: a ReLU
    layer) and ``grad_bias`` = the batch sum of the (masked) gradient, in two
    deterministic passes: per-block partial sums, then a fixed-order sum of the partials.
    Arrays (models, rows, cols) are a stack's: ``grad_bias`` (models, cols), one per model."""
    rows, cols = grad_out.shape[-2:]
    models = math.prod(grad_out.shape[:-2])
    relu = saved_out is not None
    parts = max(1, min(-(-rows // BIAS_GRAD_ROWS), MAX_BIAS_PARTS))
    partial = workspace.get("bias_partial", (models, parts, cols), np.float32)
    kernel = SOURCE.function(f"mask_bias_grad_partial<{flag(relu)}>")
    kernel((-(-cols // BIAS_GRAD_COLS), parts, models), (BIAS_GRAD_COLS, BIAS_GRAD_ROWS),
           (grad_out, saved_out if relu else grad_out, grad_z if relu else grad_out, partial,
            np.int32(rows), np.int32(cols)))
    if grad_bias is not None:
        SOURCE.function("sum_partials")((blocks(models * cols),), (THREADS,),
                                        (partial, grad_bias, np.int32(parts), np.int32(cols),
                                         np.int32(models)))
