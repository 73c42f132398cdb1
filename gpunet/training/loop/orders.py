"""Data orders of a stack's training (``fit(..., order=...)``): one order shared by all models
(the DataLoader's), one shuffle per model, or one bootstrap sample per model (bagging).

An order per model makes the stack read one batch per model, (n, B, ...) with labels (n, B)
(``nn/stack.py``): row ``j`` of the epoch's order array (n, N) lists the samples model ``j``
sees, in order. A bootstrap order draws N samples with replacement each epoch.
"""
from __future__ import annotations

import numpy as np

ORDERS = ("shared", "per_model", "bootstrap")


def check_order(order, model_count):
    """``order`` checked against the model: a stack (``model_count`` models) takes any of
    :data:`ORDERS`, a plain model only ``"shared"``."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if order != "shared" and model_count is None:
        raise ValueError(f"order={order!r} gives each model of a stack (gn.stack) its own "
                         f"data order; this model is a single model: use order='shared'")
    return order


def draw_orders(backend, num_samples, groups, bootstrap):
    """One row order per group, (groups, num_samples) int64 on the device: a permutation
    each (the backend's seeded generator, as the DataLoader shuffles), or with
    ``bootstrap`` ``num_samples`` draws with replacement each."""
    if bootstrap:
        draws = backend.uniform((groups, num_samples), np.float64) * num_samples
        return draws.astype(np.int64)
    return backend.xp.stack([backend.permutation(num_samples) for _ in range(groups)])


class GroupBatches:
    """The batches of an epoch of ``loader``'s data with one order per group of models:
    inputs (groups, B, ...) and labels (groups, B); the loader's batch size, length and
    rows per step."""

    def __init__(self, loader, groups, bootstrap):
        if not loader.shuffle or loader.drop_last or loader.shard is not None:
            raise ValueError("an order per model draws its own batches: pass (X, y) or a "
                             "DataLoader with shuffle=True and drop_last=False")
        self.loader, self.groups, self.bootstrap = loader, groups, bootstrap
        self.backend, self.batch_size = loader.backend, loader.batch_size
        self.num_samples = loader.num_samples

    def __len__(self):
        return len(self.loader)

    def step_rows(self):
        return self.loader.step_rows()

    def __iter__(self):
        loader = self.loader
        order = draw_orders(self.backend, self.num_samples, self.groups, self.bootstrap)
        for start in range(0, self.num_samples, self.batch_size):
            rows = order[:, start:start + self.batch_size]
            yield loader.X[rows], loader.y[rows]
