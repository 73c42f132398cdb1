"""One rank's share of every global batch, for data-parallel training.

``batch_size`` is the global batch. Every rank draws the same epoch permutation (from the
shared seed) and takes positions ``[r * b, (r + 1) * b)`` of each global batch of ``B`` rows,
``b = B / size``; a smaller last batch of ``L`` rows is split as evenly as it goes (the first
``L % size`` ranks take one row more). Which positions of the epoch order a rank takes is
fixed for the run: each epoch only the permutation changes.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_int


class Shard:
    """Rank ``rank`` of ``size`` over epochs of ``num_samples`` in global batches of
    ``batch_size``: ``positions`` (into the epoch order), ``step_rows`` (local rows per
    step), ``weights`` (local rows / global rows per step: what a rank's mean gradient is
    scaled by before the sum over ranks) and ``local_batch_size``."""

    def __init__(self, num_samples, batch_size, drop_last, rank, size):
        size = check_int(size, "size (the number of ranks)", 1)
        rank = check_int(rank, "rank", 0)
        if rank >= size:
            raise ValueError(f"rank must be in [0, {size}), got {rank}")
        if batch_size % size:
            lower, upper = batch_size - batch_size % size, batch_size - batch_size % size + size
            raise ValueError(
                f"batch_size {batch_size} is the global batch, split evenly across {size} "
                f"ranks: it must be a multiple of {size} (e.g. {lower or upper} or {upper})")
        full, rest = divmod(num_samples, batch_size)
        steps = full + (1 if rest and not drop_last else 0)
        if steps == 0:
            raise ValueError(f"no batch: {num_samples} samples, batch_size {batch_size}, "
                             f"drop_last=True")
        last = num_samples - (steps - 1) * batch_size if rest and not drop_last \
            else batch_size
        if last < size:
            raise ValueError(
                f"the last batch of an epoch holds {last} samples ({num_samples} samples in "
                f"batches of {batch_size}), fewer than the {size} ranks: every rank needs at "
                f"least one; choose a batch size that leaves >= {size} in the last batch, "
                f"or drop_last=True")
        self.rank, self.size, self.batch_size = rank, size, batch_size
        self.local_batch_size = b = batch_size // size
        self.steps = steps
        base, extra = divmod(last, size)
        last_rows = base + (rank < extra)
        last_start = (steps - 1) * batch_size + rank * base + min(rank, extra)
        starts = np.arange(steps - 1, dtype=np.int64)[:, None] * batch_size + rank * b
        self.positions = np.concatenate([
            (starts + np.arange(b, dtype=np.int64)).ravel(),
            np.arange(last_start, last_start + last_rows, dtype=np.int64)])
        self.step_rows = np.full(steps, b, dtype=np.int64)
        self.step_rows[-1] = last_rows
        global_rows = np.full(steps, batch_size, dtype=np.int64)
        global_rows[-1] = last
        self.weights = self.step_rows / global_rows

    def __repr__(self) -> str:
        return (f"Shard(rank {self.rank} of {self.size}, global batch {self.batch_size}, "
                f"local batch {self.local_batch_size}, {self.steps} steps)")
