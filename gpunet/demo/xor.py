"""XOR: no line separates it, so a linear model's loss stays at ln 2, while a 2-layer ReLU MLP
separates it; some seeds fail because hidden ReLUs die, and those are shown too.

Both models see the four corners of the unit square (full-batch gradient descent, softmax
cross-entropy over two classes). For a linear model the best weights are ``W = 0, b = 0``:
every point gets ``p = 1/2`` and the loss is ``ln 2``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import manual_seed, to_numpy
from ..data.toy_data import xor
from ..nn import Linear, Sequential
from ..nn.activations import ReLU
from ..nn.losses import CrossEntropyLoss
from ..optim import SGD
from ..training.loop.evaluation import evaluate, predict
from . import plotting
from .common import DemoResult, train

TITLE = "a linear model cannot separate XOR (loss stuck at ln 2); a 2-layer ReLU MLP can"
HIDDEN = 4       # the MLP is 2-HIDDEN-2
LR = 0.5         # plain SGD on the full batch of four points, both models
STEPS = 500
SEEDS = {False: range(10), True: range(4)}  # full, fast


@dataclass
class SeedRun:
    """One seed of the MLP: final loss and accuracy, hidden units dead on all four points,
    the loss per step, and the trained model."""

    seed: int
    loss: float
    accuracy: float
    dead: int
    losses: list
    model: object = field(repr=False)


@dataclass
class XorResult(DemoResult):
    linear_loss: float = 0.0
    linear_accuracy: float = 0.0
    linear_losses: list = field(default_factory=list)
    linear_model: object = field(default=None, repr=False)
    runs: list = field(default_factory=list)

    @property
    def solved(self):
        """Seeds whose MLP classifies all four points correctly."""
        return [r.seed for r in self.runs if r.accuracy == 1.0]

    @property
    def failed(self):
        return [r.seed for r in self.runs if r.accuracy < 1.0]


def _fit(model, backend, X, y):
    """Train ``model`` on the four points; ``(loss, accuracy, loss per step)``."""
    model.to(backend)
    loss_fn = CrossEntropyLoss()
    history = train(model, loss_fn, SGD(model.parameters(), lr=LR), (X, y), epochs=STEPS)
    final = evaluate(model, X, y, loss_fn)
    return final.loss, final.accuracy, history["train_loss"] + [final.loss]


def _dead_units(model, X):
    """Hidden ReLUs whose input is <= 0 on every point: they output 0 and get no gradient."""
    hidden = to_numpy(predict(model[0], X))
    return int((hidden.max(axis=0) <= 0).sum())


def run(backend, fast=False) -> XorResult:
    X, y = xor()
    manual_seed(0)
    linear = Sequential(Linear(2, 2))
    result = XorResult(linear_model=linear)
    result.linear_loss, result.linear_accuracy, result.linear_losses = _fit(linear, backend,
                                                                            X, y)
    for seed in SEEDS[fast]:
        manual_seed(seed)
        model = Sequential(Linear(2, HIDDEN), ReLU(), Linear(HIDDEN, 2))
        loss, accuracy, losses = _fit(model, backend, X, y)
        result.runs.append(SeedRun(seed, loss, accuracy, _dead_units(model, X), losses, model))
    result.conclusion = _conclusion(result)
    return result


def _conclusion(result):
    runs = result.runs
    lines = [f"linear model: loss {result.linear_loss:.4f} (ln 2 = {np.log(2):.4f}), accuracy "
             f"{result.linear_accuracy:.0%}: no line separates XOR"]
    mlp = (f"2-{HIDDEN}-2 ReLU MLP: 100% on seeds {_seeds(result.solved)} "
           f"({len(result.solved)} of {len(runs)})")
    failed = [r for r in runs if r.accuracy < 1.0]
    if failed:
        mlp += "; " + "; ".join(f"seed {r.seed} stuck at {r.accuracy:.0%} with {r.dead} of "
                                f"{HIDDEN} hidden ReLUs dead" for r in failed)
    return lines + [mlp]


def _seeds(seeds):
    return ", ".join(map(str, seeds)) if seeds else "none"


# -- figure -----------------------------------------------------------------------------
def _boundary(ax, model, title):
    """p(y = 1) of ``model`` over the square, its 0.5 contour, and the four points."""
    grid = np.linspace(-0.5, 1.5, 161, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    logits = to_numpy(predict(model, np.stack([gx.ravel(), gy.ravel()], axis=1))).astype(
        np.float64)
    p = 1 / (1 + np.exp(logits[:, 0] - logits[:, 1]))  # softmax of two classes
    p = p.reshape(gx.shape)
    # 21 bands, 1/2 in the middle of one: p = 1/2 + rounding noise is one colour
    shade = ax.contourf(gx, gy, p, levels=np.linspace(0, 1, 22), cmap="RdBu_r")
    if p.min() < 0.49 and p.max() > 0.51:  # a boundary, not rounding noise around 1/2
        ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=1.5)
    X, y = xor()
    for label, marker in ((0, "o"), (1, "s")):
        pts = X[y == label]
        ax.scatter(pts[:, 0], pts[:, 1], marker=marker, s=90, c="red" if label else "blue",
                   edgecolors="k", label=f"class {label}", zorder=3)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_aspect("equal")
    return shade


def plot(result, path):
    fig, axes = plotting.panels(4, "XOR: " + TITLE, rows=2)
    shade = _boundary(axes[0], result.linear_model,
                      f"linear model: loss {result.linear_loss:.3f}, "
                      f"accuracy {result.linear_accuracy:.0%}\n(p = 1/2 everywhere)")
    fig.colorbar(shade, ax=axes[0], label="p(class 1)", ticks=np.linspace(0, 1, 5))
    shown = {r.seed: r for r in result.runs}
    for ax, seeds, what in ((axes[1], result.solved, "solved"),
                            (axes[2], result.failed, "failed")):
        if seeds:
            r = shown[seeds[0]]
            _boundary(ax, r.model, f"MLP seed {r.seed} ({what}): accuracy {r.accuracy:.0%},\n"
                                   f"{r.dead} of {HIDDEN} hidden ReLUs dead")
        else:
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"no seed {what}", ha="center", va="center")
    ax = axes[3]
    ax.plot(result.linear_losses, "k--", label="linear model")
    for r in result.runs:
        ax.plot(r.losses, color="tab:blue" if r.accuracy == 1.0 else "tab:red", alpha=0.8,
                label=f"seed {r.seed}" + ("" if r.accuracy == 1.0 else " (failed)"))
    ax.axhline(np.log(2), color="gray", linewidth=0.8)
    ax.text(STEPS, np.log(2), "ln 2", va="bottom", ha="right", color="gray")
    ax.set_yscale("log")
    ax.set_xlabel("step (full batch)")
    ax.set_ylabel("training loss")
    ax.set_title("loss per step: MLP seeds (blue solved, red failed)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    return plotting.save(fig, path)
