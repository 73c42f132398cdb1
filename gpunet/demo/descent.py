"""Full-batch GD, SGD (batch 1) and mini-batch GD on one problem, for the same number of
epochs (the same samples seen): full batch descends smoothly but slowly per epoch; SGD descends
fast per epoch but noisily, and each epoch takes the longest; mini-batch is in between.

The lecture: the three differ only in how many samples each update sees. Here the same
2-32-32-2 ReLU MLP (same initial weights) learns the two-spirals problem with plain SGD; the
learning rate grows with the square root of the batch (``0.1 * sqrt(batch)``), the usual rule
that keeps the step's noise comparable. The loss plotted is the mean over the whole training
set after each epoch; the time is the training time alone (that measuring pass excluded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..backend import manual_seed
from ..data.toy_data import spirals
from ..nn import Linear, Sequential
from ..nn.activations import ReLU
from ..nn.losses import CrossEntropyLoss
from ..optim import SGD
from ..training.loop.evaluation import evaluate
from . import plotting
from .common import DemoResult, compact, train

TITLE = ("full batch: smooth, slow per epoch; SGD (batch 1): fast per epoch, noisy, slow "
         "per second; mini-batch between")
BASE_LR = 0.05         # at batch 1; lr = BASE_LR * sqrt(batch)
SETTINGS = {False: {"samples": 256, "epochs": 30}, True: {"samples": 128, "epochs": 10}}


@dataclass
class Method:
    """One way of descending: its name, batch size, learning rate, and the training loss and
    cumulative training seconds at epochs 0, 1, ..."""

    name: str
    batch_size: int
    lr: float
    losses: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    @property
    def epoch_seconds(self):
        """Median training time of one epoch."""
        return float(np.median(np.diff(self.seconds)))

    @property
    def rises(self):
        """Epochs that ended with a higher training loss than the one before (noise)."""
        return int(np.sum(np.diff(self.losses) > 0))


@dataclass
class DescentResult(DemoResult):
    methods: list = field(default_factory=list)

    def method(self, batch_size):
        return next(m for m in self.methods if m.batch_size == batch_size)


def _descend(backend, X, y, method, epochs):
    manual_seed(0)  # the same initial weights for every method
    model = Sequential(Linear(2, 32), ReLU(), Linear(32, 32), ReLU(), Linear(32, 2)).to(backend)
    loss_fn = CrossEntropyLoss()
    method.losses = [evaluate(model, X, y, loss_fn).loss]
    history = train(model, loss_fn, SGD(model.parameters(), lr=method.lr), (X, y),
                    epochs=epochs, batch_size=method.batch_size, val=(X, y))
    method.losses += history["val_loss"]
    method.seconds = [0.0, *np.cumsum([len(X) / r for r in history["samples_per_s"]])]
    return method


def run(backend, fast=False) -> DescentResult:
    settings = SETTINGS[fast]
    n, epochs = settings["samples"], settings["epochs"]
    X, y = spirals(n, noise=0.05, turns=1.0, seed=0)
    result = DescentResult()
    for name, batch in ((f"full batch ({n})", n), ("SGD (batch 1)", 1),
                        ("mini-batch (16)", 16)):
        method = Method(name, batch, BASE_LR * math.sqrt(batch))
        result.methods.append(_descend(backend, X, y, method, epochs))
    methods = result.methods
    result.conclusion = [
        f"training loss after {epochs} epochs: " + ", ".join(
            f"{m.name} {m.losses[-1]:.3f}" for m in methods)
        + f"; epochs in which it rose: {compact([m.rises for m in methods], '{}')}",
        f"updates per epoch: {compact([-(-n // m.batch_size) for m in methods], '{}')}; "
        f"milliseconds per epoch: {compact([1e3 * m.epoch_seconds for m in methods])}",
    ]
    return result


def plot(result, path):
    fig, axes = plotting.panels(2, "Gradient descent: " + TITLE)
    for m in result.methods:
        label = f"{m.name}, lr {m.lr:.2g}"
        axes[0].plot(range(len(m.losses)), m.losses, "o-", markersize=3, label=label)
        axes[1].plot(m.seconds[1:], m.losses[1:], "o-", markersize=3, label=label)
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("training seconds (log scale)")
    axes[1].set_xscale("log")
    for ax, title in zip(axes, ("against epochs", "against wall time")):
        ax.set_ylabel("training loss (whole set)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return plotting.save(fig, path)
