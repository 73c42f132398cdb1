"""Launcher of ``kernels/clip_grad.cu``: the gradient norm of the flat buffer and the clipping
by it, both reading and writing device memory only (no host synchronisation, capturable).

NumPy reference: ``NumpyOps.grad_norm``, ``NumpyOps.clip_by_norm``. Tests:
tests/test_clip_grad.py.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels import KernelSource, blocks, vector_count, THREADS

NORM_THREADS = 256     # threads per block of the norm; also the most blocks (parts) it uses
ITEMS_PER_THREAD = 16  # values a thread reduces before the block's tree (sets the grid)
NORM_KINDS = {"inf": 0, "1": 1, "2": 2, "p": 3}

SOURCE = KernelSource(
    "clip_grad",
    kernels=("grad_norm", "clip_by_norm"),
    defines=(("NORM_THREADS", NORM_THREADS), ("NORM_INF", NORM_KINDS["inf"]),
             ("NORM_1", NORM_KINDS["1"]), ("NORM_2", NORM_KINDS["2"]),
             ("NORM_P", NORM_KINDS["p"])),
)


def norm_kind(norm_type: float) -> int:
    """The kernel's code for a p-norm (``math.inf``, 1, 2 or any other p > 0)."""
    if math.isinf(norm_type):
        return NORM_KINDS["inf"]
    return NORM_KINDS.get(f"{norm_type:g}", NORM_KINDS["p"])


def grad_norm(grad, norm_type: float, out, workspace) -> None:
    """``out[...]`` = the ``norm_type``-norm of the contiguous float32 ``grad`` (any length;
    ``out`` a one-element float32 device array)."""
    n = grad.size
    parts = max(1, min(-(-n // (NORM_THREADS * ITEMS_PER_THREAD)), NORM_THREADS))
    chunk = max(1, -(-n // parts))
    parts = max(1, -(-n // chunk))
    partial = workspace.get("norm_parts", (parts,), np.float64)
    ticket = workspace.zeros("norm_ticket", (1,), np.uint32)
    p = 0.0 if math.isinf(norm_type) else float(norm_type)
    SOURCE.function("grad_norm")(
        (parts,), (NORM_THREADS,),
        (grad, np.int64(n), np.int64(chunk), np.int32(norm_kind(norm_type)), np.float64(p),
         partial, ticket, out))


def clip_by_norm(grad, max_norm: float, norm) -> None:
    """``grad *= min(max_norm / (norm + 1e-6), 1)`` with ``norm`` read on the device."""
    n = grad.size
    n4 = vector_count(n, grad)
    SOURCE.function("clip_by_norm")(
        (blocks(n4 + n - 4 * n4),), (THREADS,),
        (grad, norm, np.int64(n), np.int64(n4), np.float32(max_norm)))
