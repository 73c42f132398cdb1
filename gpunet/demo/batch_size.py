"""The batch size is a hyperparameter chosen on a validation set, as the lecture says.

A 784-128-10 ReLU MLP is trained on a subset of Fashion-MNIST's training split for a few epochs
at each batch size, with ``gpunet train``'s SGD (momentum 0.9, a cosine schedule) and the
learning rate scaled with the batch (its 0.05 at batch 128, times ``batch / 128``); its accuracy is measured on
held-out samples of the same split (the test split is never looked at), and the size with
the best validation accuracy is chosen. The time per epoch is the training time alone; on a
GPU the figure also shows the throughput. The data are found on disk or downloaded as for
``gpunet train`` (see ``gpunet.datasets``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import manual_seed
from ..cli import DEFAULT_BATCH_SIZE
from ..data import datasets
from ..nn import Flatten, Linear, Sequential
from ..nn.activations import ReLU
from ..nn.losses import CrossEntropyLoss
from ..optim import DEFAULTS, SGD
from ..training.loop.fit import NonFiniteLossError
from ..training.loop.schedules import CosineLR
from . import plotting
from .common import DemoResult, compact, train

TITLE = "choose the batch size on a validation set (Fashion-MNIST subset, lr scaled with it)"
DATASET = "fashion-mnist"
HIDDEN = 128
REFERENCE_BATCH = DEFAULT_BATCH_SIZE[DATASET]   # where the learning rate is gpunet train's
SGD_DEFAULTS = DEFAULTS["sgd"]                   # its learning rate and momentum
SETTINGS: dict[bool, dict] = {False: {"train": 10_000, "val": 5_000, "epochs": 5,
                    "sizes": (8, 16, 32, 64, 128, 256, 512, 1024)},
            True: {"train": 2_000, "val": 1_000, "epochs": 2, "sizes": (16, 128, 1024)}}
NEAR = 0.01  # sizes within this validation accuracy of the best are named too


def learning_rate(batch_size):
    """``gpunet train``'s SGD learning rate, scaled linearly from its batch size."""
    return SGD_DEFAULTS["lr"] * batch_size / REFERENCE_BATCH


@dataclass
class Trial:
    """One batch size: its learning rate, final validation accuracy (None if training
    diverged), median training seconds per epoch and samples per second."""

    batch_size: int
    lr: float
    val_accuracy: float | None
    epoch_seconds: float | None
    samples_per_s: float | None


@dataclass
class BatchSizeResult(DemoResult):
    trials: list = field(default_factory=list)
    device: str = "cpu"
    train_samples: int = 0
    source: str = ""  # the line naming where the data was read from

    def report(self) -> list:
        """The data's source, then the conclusion."""
        return [self.source, *self.conclusion]

    @property
    def chosen(self):
        """The batch size with the best validation accuracy."""
        done = [t for t in self.trials if t.val_accuracy is not None]
        return max(done, key=lambda t: t.val_accuracy).batch_size


def _subset(settings):
    """Disjoint training and validation samples of the training split (seeded), and the
    line naming where the data was read from."""
    (X, y), _, source = datasets.load_with_source(DATASET)
    order = np.random.default_rng(0).permutation(len(X))
    n_train, n_val = settings["train"], settings["val"]
    fit_idx, val_idx = order[:n_train], order[n_train:n_train + n_val]
    return (X[fit_idx], y[fit_idx]), (X[val_idx], y[val_idx]), source


def _trial(backend, data, val, batch_size, epochs):
    manual_seed(0)
    model = Sequential(Flatten(), Linear(784, HIDDEN), ReLU(), Linear(HIDDEN, 10)).to(backend)
    lr = learning_rate(batch_size)
    optimizer = SGD(model.parameters(), lr=lr, momentum=SGD_DEFAULTS["momentum"])
    try:
        history = train(model, CrossEntropyLoss(), optimizer, data, val=val, epochs=epochs,
                        batch_size=batch_size, schedule=CosineLR(epochs))
    except NonFiniteLossError:
        return Trial(batch_size, lr, None, None, None)
    speed = float(np.median(history["samples_per_s"]))
    return Trial(batch_size, lr, history["val_accuracy"][-1], len(data[0]) / speed, speed)


def run(backend, fast=False) -> BatchSizeResult:
    settings = SETTINGS[fast]
    data, val, source = _subset(settings)
    result = BatchSizeResult(device=backend.name, train_samples=len(data[0]), source=source)
    for size in settings["sizes"]:
        result.trials.append(_trial(backend, data, val, size, settings["epochs"]))
    result.conclusion = _conclusion(result, settings)
    return result


def _conclusion(result, settings):
    trials = result.trials
    best = next(t for t in trials if t.batch_size == result.chosen)
    near = [t.batch_size for t in trials
            if t.val_accuracy is not None and t.val_accuracy >= best.val_accuracy - NEAR]
    accuracies = ", ".join("diverged" if t.val_accuracy is None else f"{t.val_accuracy:.1%}"
                           for t in trials)
    lines = [f"validation accuracy after {settings['epochs']} epochs at batch "
             f"{compact([t.batch_size for t in trials], '{}')} (lr {SGD_DEFAULTS['lr']} x "
             f"batch/{REFERENCE_BATCH}): {accuracies}; chosen: {best.batch_size} "
             f"(within {NEAR:.0%} of it: {compact(near, '{}')})"]
    timed = [t for t in trials if t.epoch_seconds is not None]
    line = (f"seconds per epoch of {result.train_samples:,} samples: "
            f"{compact([t.epoch_seconds for t in timed])}")
    if result.device == "gpu":
        line += f"; samples/s: {compact([t.samples_per_s for t in timed], '{:,.0f}')}"
    return lines + [line]


def plot(result, path):
    gpu = result.device == "gpu"
    fig, axes = plotting.panels(3 if gpu else 2, "Batch size: " + TITLE)
    done = [t for t in result.trials if t.val_accuracy is not None]
    sizes = [t.batch_size for t in done]
    axes[0].plot(sizes, [100 * t.val_accuracy for t in done], "o-")
    best = next(t for t in done if t.batch_size == result.chosen)
    axes[0].plot([best.batch_size], [100 * best.val_accuracy], "*", color="tab:red",
                 markersize=16, label=f"chosen: {best.batch_size}")
    axes[0].set_ylabel("validation accuracy (%)")
    diverged = [str(t.batch_size) for t in result.trials if t.val_accuracy is None]
    axes[0].set_title("validation accuracy (lr ∝ batch)"
                      + (f"; diverged at {', '.join(diverged)}" if diverged else ""), fontsize=10)
    axes[1].plot(sizes, [t.epoch_seconds for t in done], "o-")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("seconds per epoch")
    axes[1].set_title(f"training time per epoch ({result.device})", fontsize=10)
    if gpu:
        axes[2].plot(sizes, [t.samples_per_s for t in done], "o-")
        axes[2].set_yscale("log")
        axes[2].set_ylabel("samples / s")
        axes[2].set_title("throughput (gpu)", fontsize=10)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("batch size")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend()
    return plotting.save(fig, path)
