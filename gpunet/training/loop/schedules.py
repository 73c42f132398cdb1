"""Learning-rate schedules, applied once per epoch by :func:`gpunet.fit` through
``optimizer.lr``.

A schedule is a callable ``schedule(base_lr, epoch) -> lr`` (``epoch`` counts from 0), so it
holds no state and a resumed run picks up the same learning rates.
"""
from __future__ import annotations

import math

from ...checks import check_number, check_positive_int


class StepLR:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, step_size, gamma=0.1):
        self.step_size = check_positive_int(step_size, "step_size")
        self.gamma = check_number(gamma, "gamma", 0, 1, low_open=True)

    def __call__(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)

    def __repr__(self):
        return f"StepLR(step_size={self.step_size}, gamma={self.gamma})"


class CosineLR:
    """Cosine annealing from ``base_lr`` at epoch 0 towards ``min_lr`` over ``epochs``
    epochs (held at ``min_lr`` after that)."""

    def __init__(self, epochs, min_lr=0.0):
        self.epochs = check_positive_int(epochs, "epochs")
        self.min_lr = check_number(min_lr, "min_lr", 0)

    def __call__(self, base_lr, epoch):
        progress = min(epoch, self.epochs) / self.epochs
        return self.min_lr + (base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    def __repr__(self):
        return f"CosineLR(epochs={self.epochs}, min_lr={self.min_lr})"
