"""Launcher of ``kernels/step.cu``: the static training step's gather and end-of-step record.

NumPy references: ``NumpyOps.gather_batch``, ``NumpyOps.end_step``. Tests:
tests/test_static_step.py (CPU reference), tests/test_gpu_graph.py (the kernels, captured).
"""
from __future__ import annotations

import numpy as np

from ..kernels import THREADS, KernelSource, blocks

INPUT_TYPES = {np.dtype(np.uint8): "unsigned char", np.dtype(np.float32): "float"}
LABEL_TYPES = {np.dtype(np.int32): "int", np.dtype(np.int64): "long long"}

SOURCE = KernelSource(
    "step",
    kernels=tuple(f"gather_batch<{x}, {y}>" for x in INPUT_TYPES.values()
                  for y in LABEL_TYPES.values()) + ("end_step",),
)


def gather_batch(X, y, order, cursor, x_out, y_out) -> None:
    """:meth:`NumpyOps.gather_batch` in one launch (``X`` uint8 or float32, ``x_out``
    float32, ``y`` int32/int64, ``order`` and ``cursor`` int64; all C-contiguous). An
    order (groups, N) fills ``x_out`` (groups, B, ...) and ``y_out`` (groups, B)."""
    rows = y_out.shape[-1]
    groups = y_out.size // max(rows, 1)
    features = x_out.size // max(groups * rows, 1)
    kernel = SOURCE.function(f"gather_batch<{INPUT_TYPES[X.dtype]}, {LABEL_TYPES[y.dtype]}>")
    kernel((blocks(groups * rows * features),), (THREADS,),
           (X, y, order, cursor, x_out, y_out, np.int64(rows), np.int64(features),
            np.float32(255 if X.dtype == np.uint8 else 1), np.int64(groups),
            np.int64(order.shape[-1] if order.ndim == 2 else 0)))


def end_step(cursor, rows, batch_size, loss, correct, losses, hits) -> None:
    """:meth:`NumpyOps.end_step` in one launch of one block (a stack's ``loss`` and
    ``correct``: one per model)."""
    models = loss.size
    SOURCE.function("end_step")((1,), (min(THREADS, -(-models // 32) * 32),),
                                (cursor, np.int64(rows), np.int64(batch_size), loss, correct,
                                 losses, hits, np.int64(models)))
