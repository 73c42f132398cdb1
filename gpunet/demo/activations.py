"""Activations and vanishing gradients: sigmoid's derivative is at most 1/4, so a deep sigmoid
net's gradient shrinks layer by layer towards the input; ReLU's is 1 wherever it is active.

The curves are computed by the layers themselves: ``forward`` on a grid of ``z``, then
``backward`` of ones gives ``g'(z)``. The gradient norms come from one forward and backward
pass of a batch of the two-spirals problem through 10 hidden layers of 64 units (sigmoid and
tanh Xavier-initialised, ReLU and LeakyReLU He-initialised, as ``gpunet train`` does).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import manual_seed, to_numpy
from ..cli import ACTIVATIONS
from ..data.toy_data import spirals
from ..nn import Linear, Sequential
from ..nn.losses import CrossEntropyLoss
from . import plotting
from .common import DemoResult

TITLE = ("sigmoid's gradient vanishes in a deep net (derivative <= 1/4 per layer); "
         "ReLU's does not")
NAMES = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "ReLU", "leaky_relu": "LeakyReLU"}
DEPTH, WIDTH, BATCH = 10, 64, 256
PLOT_SLOPE = 0.1  # LeakyReLU's slope in the curves (its default 0.01 would not show)


@dataclass
class ActivationsResult(DemoResult):
    z: np.ndarray | None = field(default=None, repr=False)
    curves: dict = field(default_factory=dict, repr=False)       # name -> (g(z), g'(z))
    grad_norms: dict = field(default_factory=dict)   # name -> |dJ/dW| per Linear, input first

    def first_layer(self, name):
        """The gradient norm of the first (input-side) layer's weights of net ``name``."""
        return self.grad_norms[name][0]


def _activation(key, backend, **kwargs):
    return ACTIVATIONS[key][0](**kwargs).to(backend)


def _curve(key, backend, z):
    """``(g(z), g'(z))`` from the layer's forward and its backward of ones."""
    kwargs = {"negative_slope": PLOT_SLOPE} if key == "leaky_relu" else {}
    layer = _activation(key, backend, **kwargs)
    zs = backend.asarray(z[:, None])
    value = to_numpy(layer(zs))[:, 0].copy()
    slope = to_numpy(layer.backward(backend.xp.ones_like(zs)))[:, 0].copy()
    return value, slope


def _gradient_norms(key, backend, X, y):
    """|dJ/dW| of each Linear of a DEPTH-hidden-layer net after one backward, input first."""
    manual_seed(0)
    cls, init = ACTIVATIONS[key]
    layers, width = [], X.shape[1]
    for _ in range(DEPTH):
        layers += [Linear(width, WIDTH, init=init), cls()]
        width = WIDTH
    model = Sequential(*layers, Linear(width, 2, init=init)).to(backend)
    loss_fn = CrossEntropyLoss()
    loss_fn(model(backend.asarray(X)), backend.asarray(y))
    model.backward(loss_fn.backward(), input_grad=False)
    return [float(np.linalg.norm(to_numpy(m.weight.grad))) for m in model
            if isinstance(m, Linear)]


def run(backend, fast=False) -> ActivationsResult:
    """(``fast`` changes nothing: one backward pass is already quick.)"""
    z = np.linspace(-6, 6, 241, dtype=np.float32)
    X, y = spirals(BATCH, seed=0)
    result = ActivationsResult(z=z)
    for key in NAMES:
        result.curves[key] = _curve(key, backend, z)
        result.grad_norms[key] = _gradient_norms(key, backend, X, y)
    sig, relu = result.first_layer("sigmoid"), result.first_layer("relu")
    result.conclusion = [
        f"first-layer gradient norm after one backward through {DEPTH} hidden layers: "
        f"sigmoid {sig:.1e}, ReLU {relu:.1e} ({relu / sig:.0e} times larger); "
        f"tanh {result.first_layer('tanh'):.1e}, LeakyReLU "
        f"{result.first_layer('leaky_relu'):.1e}",
        f"sigmoid's derivative is at most {result.curves['sigmoid'][1].max():.2f}, so each "
        f"layer shrinks the gradient; ReLU's is 1 where active",
    ]
    return result


def plot(result, path):
    fig, axes = plotting.panels(3, "Activations: " + TITLE)
    for key, name in NAMES.items():
        value, slope = result.curves[key]
        label = name + (f" ({PLOT_SLOPE})" if key == "leaky_relu" else "")
        style = {"linewidth": 4, "alpha": 0.5} if key == "relu" else {}  # under LeakyReLU
        axes[0].plot(result.z, value, label=label, **style)
        axes[1].plot(result.z, slope, label=label, **style)
        norms = result.grad_norms[key]
        axes[2].plot(range(1, len(norms) + 1), norms, "o-", label=name)
    axes[0].set_ylim(-1.5, 3)
    for ax, title in ((axes[0], "g(z)"), (axes[1], "g'(z), from each layer's backward")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("z")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[2]
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = next to the input)")
    ax.set_ylabel("|dJ/dW| after one backward")
    ax.set_title(f"{DEPTH} hidden layers of {WIDTH}: gradient norm per layer", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return plotting.save(fig, path)
