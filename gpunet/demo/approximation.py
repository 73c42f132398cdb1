"""Universal approximation: one hidden ReLU layer fits sin(x) ever better as it widens.

The lecture: a network with one hidden layer approximates any continuous function on a bounded
domain, given enough hidden units; with ReLU it is a broken line with one kink per unit. Here
``x -> Linear(1, w) -> ReLU -> Linear(w, 1)`` is fitted to sin(x) and to a step on [-pi, pi]
for widths 1, 4, 16, 64 (Adam, full batch, mean squared error). Each width is trained from a
few seeds and the seed with the lowest *training* loss is kept (the theorem says such weights
exist; finding them is the optimizer's part); its error is measured on a grid four times
finer than the training points.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import manual_seed, to_numpy
from ..nn import Linear, Sequential
from ..nn.activations import ReLU
from ..nn.losses import MSELoss
from ..optim import Adam
from ..training.loop.evaluation import predict
from . import plotting
from .common import DemoResult, compact, train

TITLE = "one hidden ReLU layer approximates sin(x) better as it widens (width 1, 4, 16, 64)"
WIDTHS = (1, 4, 16, 64)
TARGETS = {"sin(x)": np.sin, "step": lambda x: (x > 0).astype(x.dtype)}
SAMPLES = 256          # training points on [-pi, pi]; the error grid has 4x as many
LR = 0.03
SETTINGS = {False: {"steps": 1500, "seeds": 3}, True: {"steps": 500, "seeds": 2}}


@dataclass
class Fit:
    """The kept fit of one target at one width: its error on the fine grid, its seed and its
    curve there."""

    width: int
    error: float
    seed: int
    curve: np.ndarray = field(repr=False)


@dataclass
class ApproximationResult(DemoResult):
    fits: dict = field(default_factory=dict)   # target name -> [Fit per width]
    grid: np.ndarray | None = field(default=None, repr=False)

    def errors(self, target):
        """Mean squared errors of ``target`` at each width of :data:`WIDTHS`."""
        return [f.error for f in self.fits[target]]


def _grid(n):
    return np.linspace(-np.pi, np.pi, n, dtype=np.float32)[:, None]


def _best_fit(backend, f, width, steps, seeds):
    """Train from each seed; keep the lowest training loss; its error on the fine grid."""
    x, fine = _grid(SAMPLES), _grid(4 * SAMPLES)
    best = None
    for seed in range(seeds):
        manual_seed(seed)
        model = Sequential(Linear(1, width), ReLU(), Linear(width, 1)).to(backend)
        history = train(model, MSELoss(), Adam(model.parameters(), lr=LR), (x, f(x)),
                        epochs=steps)
        if best is None or history["train_loss"][-1] < best[0]:
            best = (history["train_loss"][-1], seed, model)
    curve = to_numpy(predict(best[2], fine))[:, 0]
    error = float(np.mean((curve.astype(np.float64) - f(fine)[:, 0]) ** 2))
    return Fit(width, error, best[1], curve)


def run(backend, fast=False) -> ApproximationResult:
    settings = SETTINGS[fast]
    result = ApproximationResult(grid=_grid(4 * SAMPLES)[:, 0])
    for name, f in TARGETS.items():
        result.fits[name] = [_best_fit(backend, f, w, settings["steps"], settings["seeds"])
                             for w in WIDTHS]
    widths = ", ".join(map(str, WIDTHS))
    result.conclusion = [
        f"mean squared error at width {widths}: sin(x) {compact(result.errors('sin(x)'))}; "
        f"step {compact(result.errors('step'))}",
        "wider is better; the step gains least: a continuous fit must ramp across its jump",
    ]
    return result


def plot(result, path):
    fig, axes = plotting.panels(3, "Universal approximation: " + TITLE)
    x = result.grid
    for ax, (name, f) in zip(axes, TARGETS.items()):
        ax.plot(x, f(x), "k", linewidth=3, alpha=0.3, label=name)
        for fit in result.fits[name]:
            ax.plot(x, fit.curve, linewidth=1.2, label=f"width {fit.width}")
        ax.set_title(f"{name} fitted by one hidden ReLU layer", fontsize=10)
        ax.set_xlabel("x")
        ax.legend(fontsize=8)
    ax = axes[2]
    for name in TARGETS:
        ax.plot(WIDTHS, result.errors(name), "o-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(WIDTHS, [str(w) for w in WIDTHS])
    ax.set_xlabel("hidden units")
    ax.set_ylabel("mean squared error (fine grid)")
    ax.set_title("error against width", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return plotting.save(fig, path)
