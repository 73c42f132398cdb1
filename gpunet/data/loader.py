"""``DataLoader``: mini-batches of an in-memory dataset that lives on the model's device.

The arrays are moved to the device once; every epoch is reshuffled with the backend's seeded
RNG (a device permutation on the GPU) and each batch is a gather (``X[idx]``) or, without
shuffling, a slice, so no data crosses between host and device during training.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_backend
from .shard import Shard


def resolve_batch_size(batch_size, num_samples: int, drop_last: bool) -> int:
    """``batch_size`` as a positive int (``None``: the whole dataset), checked against ``n``."""
    if batch_size is None:
        return num_samples
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(
            f"batch_size must be a positive integer or None (full batch), got {batch_size!r}"
        )
    if batch_size <= 0:
        raise ValueError(
            f"batch_size must be a positive integer or None (full batch), got {batch_size}"
        )
    if drop_last and batch_size > num_samples:
        raise ValueError(
            f"batch_size {batch_size} is larger than the dataset ({num_samples} samples): "
            f"with drop_last=True no batch would be produced"
        )
    return int(batch_size)


def _device_array(backend, a, what: str):
    """``a`` on ``backend`` in its own dtype, checked to be a numeric array of ndim >= 1."""
    a = backend.asarray(a)
    if a.ndim == 0:
        raise ValueError(f"{what} must have a leading sample axis, got a 0-d array")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} must hold numbers (bool, int, uint or float), got {a.dtype}")
    return a


class DataLoader:
    """Iterate over ``(xb, yb)`` batches of ``(X, y)`` held on one device.

    ``X`` is ``(n, ...)`` (float, or uint8 images, kept in their dtype: scale them with
    :func:`gpunet.datasets.to_float`), ``y`` is ``(n, ...)`` labels or targets; NumPy or
    device arrays. ``batch_size=None`` gives one full batch per epoch (gradient descent),
    ``1`` gives SGD. The last partial batch is included unless ``drop_last``. With
    ``shuffle`` each epoch draws ``backend.permutation(n)`` (seeded by
    :func:`gpunet.manual_seed`); a single full batch is not permuted, as order cannot change
    it. Batches are device arrays, views of the stored data when not shuffled: don't modify
    them in place.

    ``shard=(rank, size)``: data-parallel training (see ``shard.py``): ``batch_size`` is the
    global batch, and this loader yields rank ``rank``'s slice of each global batch.
    """

    def __init__(self, X, y, batch_size=None, *, shuffle=True, drop_last=False, device="cpu",
                 shard=None):
        self.backend = get_backend(device)
        self.X = _device_array(self.backend, X, "X")
        self.y = _device_array(self.backend, y, "y")
        if len(self.X) != len(self.y):
            raise ValueError(
                f"X and y must have the same number of samples, got {len(self.X)} and "
                f"{len(self.y)}"
            )
        self.num_samples = len(self.X)
        if self.num_samples == 0:
            raise ValueError("the dataset is empty (0 samples)")
        self.batch_size = resolve_batch_size(batch_size, self.num_samples, drop_last)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.shard = None if shard is None else Shard(self.num_samples, self.batch_size,
                                                      self.drop_last, *shard)
        self._positions = None if shard is None else self.backend.asarray(self.shard.positions)

    def __repr__(self) -> str:
        return (
            f"DataLoader({self.num_samples} samples, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, device={self.backend.name!r})"
        )

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def step_rows(self) -> np.ndarray:
        """The rows of each step this loader yields (this rank's, when sharded)."""
        if self.shard is not None:
            return self.shard.step_rows.copy()
        rows = np.full(len(self), self.batch_size, dtype=np.int64)
        rows[-1] = min(self.batch_size, self.num_samples - (len(self) - 1) * self.batch_size)
        return rows

    def epoch_order(self):
        """The rows of one epoch in the order they are used (a fresh permutation when
        shuffling; this rank's share when sharded); None: all rows in storage order."""
        order = None
        if self.shuffle and self.batch_size < self.num_samples:
            order = self.backend.permutation(self.num_samples)
        if self.shard is None:
            return order
        return self._positions if order is None else order[self._positions]

    def __iter__(self):
        order = self.epoch_order()
        if self.shard is not None:
            size = self.shard.local_batch_size
            for start in range(0, len(order), size):
                idx = order[start:start + size]
                yield self.X[idx], self.y[idx]
            return
        n, size = self.num_samples, self.batch_size
        for start in range(0, len(self) * size, size):
            stop = min(start + size, n)
            if order is None:
                yield self.X[start:stop], self.y[start:stop]
            else:
                idx = order[start:stop]
                yield self.X[idx], self.y[idx]
