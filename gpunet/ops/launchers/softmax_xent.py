"""Launcher of ``kernels/softmax_xent.cu``: fused softmax cross-entropy and the label check.

NumPy reference: ``NumpyOps.softmax_cross_entropy`` and ``NumpyOps.check_labels``.
Tests: tests/test_cupy_ops.py (``test_softmax_cross_entropy``, ``test_out_of_range_label_*``),
tests/test_gpu_path.py, tests/test_weighted_losses.py (class and sample weights, smoothing).

A bad label is flagged on the device in an error word (no host synchronisation): the word
keeps the smallest ``index << LABEL_BITS | (label + 2**(LABEL_BITS - 1))``, labels clamped
to LABEL_BITS bits, so :func:`decode_error` recovers the first bad index and its label.
"""
from __future__ import annotations

import numpy as np

from ..kernels import KernelSource, blocks, THREADS

WARP = 32               # threads per warp: one warp per row
ROWS_PER_BLOCK = 8      # a block is ROWS_PER_BLOCK warps
FINISH_THREADS = 256    # threads per block of the loss reduction
FINISH_ROWS_PER_THREAD = 8
LABEL_BITS = 24
MAX_INDEX = 2**(64 - LABEL_BITS) - 1  # an index must fit the error word's upper bits
NO_ERROR = np.uint64(2**64 - 1)
LABEL_TYPES = {np.dtype(np.int32): "int", np.dtype(np.int64): "long long"}

SOURCE = KernelSource(
    "softmax_xent",
    kernels=("softmax_xent_rows<int>", "softmax_xent_rows<long long>", "softmax_xent_finish",
             "check_label_range<int>", "check_label_range<long long>",
             "xent_weight_total<int>", "xent_weight_total<long long>"),
    defines=(("WARP", WARP), ("ROWS_PER_BLOCK", ROWS_PER_BLOCK),
             ("FINISH_THREADS", FINISH_THREADS), ("LABEL_BITS", LABEL_BITS)),
)


def decode_error(word: int) -> tuple[int, int, bool]:
    """``(index, label, clamped)`` of an error word (``clamped``: the label's magnitude is at
    least what is shown)."""
    half = 1 << (LABEL_BITS - 1)
    label = (word & ((1 << LABEL_BITS) - 1)) - half
    return word >> LABEL_BITS, label, label in (-half, half - 1)


def check_label_range(labels, num_classes: int, error_word) -> None:
    """Flag labels outside ``[0, num_classes)`` into ``error_word`` (a 1-element uint64
    device array); ``labels`` is int32 or int64, C-contiguous, at most MAX_INDEX long."""
    kernel = SOURCE.function(f"check_label_range<{LABEL_TYPES[labels.dtype]}>")
    kernel((blocks(labels.size),), (THREADS,),
           (labels, np.int64(labels.size), np.int64(num_classes), error_word))


def _finish_grid(batch):
    """``(parts, chunk)``: the blocks of the row reductions and the rows each sums."""
    parts = max(1, min(-(-batch // (FINISH_THREADS * FINISH_ROWS_PER_THREAD)), FINISH_THREADS))
    chunk = -(-batch // parts)
    return -(-batch // chunk), chunk


def softmax_xent(logits, labels, grad, error_word, workspace, out=None, *, weight=None,
                 sample_weight=None, label_smoothing=0.0):
    """Fused loss, gradient and correct count of :meth:`NumpyOps.softmax_cross_entropy`:
    returns 0-d device arrays ``(loss, correct)`` (new ones, or the pair ``out``: float32,
    int64); bad labels go to ``error_word``. ``weight`` (classes,) and ``sample_weight``
    (batch,) are float32 C-contiguous device arrays or None; with either, or a
    ``label_smoothing``, a first kernel sums the batch's weight W on the device.

    A stack's logits (models, batch, classes) with labels (batch,) or (groups, batch) give
    a loss and a count per model, shape (models,) (unweighted)."""
    *lead, batch, num_classes = logits.shape
    models = lead[0] if lead else 1
    rows = models * batch
    row_loss = workspace.get("row_loss", (rows,), np.float32)
    row_hit = workspace.get("row_hit", (rows,), np.int32)
    parts, chunk = _finish_grid(batch)
    part_loss = workspace.get("loss_parts", (models, parts), np.float64)
    part_hit = workspace.get("hit_parts", (models, parts), np.int64)
    ticket = workspace.zeros("loss_ticket", (models,), np.uint32)
    xp = workspace.xp
    loss, correct = out if out is not None else (xp.empty(tuple(lead), dtype=np.float32),
                                                 xp.empty(tuple(lead), dtype=np.int64))
    label_period = rows // (labels.size // batch)  # rows sharing one row of labels
    label_type = LABEL_TYPES[labels.dtype]
    total = inverse = None
    if weight is not None or sample_weight is not None or label_smoothing:
        total = workspace.get("weight_total", (1,), np.float64)
        inverse = workspace.get("weight_inverse", (1,), np.float32)
        SOURCE.function(f"xent_weight_total<{label_type}>")(
            (parts,), (FINISH_THREADS,),
            (labels, weight, sample_weight, np.int32(batch), np.int32(num_classes),
             np.int32(chunk), workspace.get("weight_parts", (parts,), np.float64),
             workspace.zeros("weight_ticket", (1,), np.uint32), total, inverse))
    rows_kernel = SOURCE.function(f"softmax_xent_rows<{label_type}>")
    rows_kernel((blocks(rows, ROWS_PER_BLOCK),), (ROWS_PER_BLOCK * WARP,),
                (logits, labels, grad, row_loss, row_hit, error_word,
                 np.int32(rows), np.int32(num_classes), np.float32(1.0 / batch),
                 weight, sample_weight, inverse, np.float32(label_smoothing),
                 np.int32(label_period), np.int32(batch)))
    SOURCE.function("softmax_xent_finish")(
        (parts, models), (FINISH_THREADS,),
        (row_loss, row_hit, part_loss, part_hit, ticket, loss, correct,
         np.int32(batch), np.int32(chunk), total))
    return loss, correct
