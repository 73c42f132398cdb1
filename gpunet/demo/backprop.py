"""One forward and one backward pass of a tiny network, step by step in the lecture's notation.

The network is the lecture's picture made small: three inputs ``a(1) = x``, a hidden layer of
two sigmoid units, one output used directly (regression), ``J = (f(x) − y)²``. The forward
pass is ``z(l+1) = W(l) a(l) + b(l)``, ``a(l+1) = g(z(l+1))``; the backward pass is
``δ = dJ/dz``, ``dJ/dW = δ aᵀ``, ``dJ/db = δ``, ``dJ/da = Wᵀ δ`` and, through the
activation, ``δ = dJ/da ⊙ g'(z)``. Each step is computed by hand here, in float64
NumPy with column vectors, and then compared with the gradients ``model.backward`` leaves in
the layers' parameters, which :func:`gpunet.gradcheck` checks against central differences.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import to_numpy
from ..nn import Linear, Sequential
from ..nn.activations import Sigmoid
from ..nn.gradcheck import GradcheckError, gradcheck
from ..nn.losses import MSELoss
from . import plotting
from .common import DemoResult

TITLE = "one forward and backward pass by hand, in the lecture's notation, = model.backward"
X = np.array([1.0, 2.0, -1.0])
Y = 1.0
WEIGHTS = {"0.weight": [[0.1, -0.2, 0.3], [-0.4, 0.5, 0.6]], "0.bias": [0.1, -0.1],
           "2.weight": [[0.7, -0.8]], "2.bias": [0.2]}
DIGITS = 6  # significant digits printed (the tests read them back)
J_STEP = f"J = (f(x) − y)², y = {Y:g}"


@dataclass
class BackpropResult(DemoResult):
    steps: list = field(default_factory=list)   # (formula, value) in the order computed
    by_hand: dict = field(default_factory=dict)     # gradient name -> array
    by_backward: dict = field(default_factory=dict)  # the same names, from model.backward
    largest_difference: float = 0.0
    gradcheck: str = ""

    def report(self):
        width = max(len(f) for f, _ in self.steps)
        lines = []
        for formula, value in self.steps:
            if formula in ("forward", "backward"):
                lines.append(f"{formula}:")
            else:
                lines.append(f"  {formula:<{width}} = {show(value)}")
        return lines + self.conclusion


def show(value):
    """``value`` (a number, vector or matrix) as a Python literal of DIGITS digits."""
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 0:
        return f"{float(value):.{DIGITS}g}"
    return "[" + ", ".join(show(v) for v in value) + "]"


def by_hand():
    """The lecture's forward and backward pass: ``(steps, gradients)``."""
    W1, b1 = np.array(WEIGHTS["0.weight"]), np.array(WEIGHTS["0.bias"])
    W2, b2 = np.array(WEIGHTS["2.weight"]), np.array(WEIGHTS["2.bias"])
    a1 = X
    z2 = W1 @ a1 + b1
    a2 = 1 / (1 + np.exp(-z2))
    z3 = W2 @ a2 + b2
    J = float((z3[0] - Y) ** 2)
    d3 = 2 * (z3 - Y)
    dW2, db2, da2 = np.outer(d3, a2), d3, W2.T @ d3
    d2 = da2 * a2 * (1 - a2)
    dW1, db1, da1 = np.outer(d2, a1), d2, W1.T @ d2
    steps = [("forward", None), ("a(1) = x", a1), ("z(2) = W(1) a(1) + b(1)", z2),
             ("a(2) = g(z(2)), g = sigmoid", a2), ("f(x) = z(3) = W(2) a(2) + b(2)", z3),
             (J_STEP, J), ("backward", None),
             ("δ(3) = dJ/dz(3) = 2 (f(x) − y)", d3), ("dJ/dW(2) = δ(3) a(2)ᵀ", dW2),
             ("dJ/db(2) = δ(3)", db2), ("dJ/da(2) = W(2)ᵀ δ(3)", da2),
             ("δ(2) = dJ/da(2) ⊙ g'(z(2)), g' = g (1 − g)", d2),
             ("dJ/dW(1) = δ(2) a(1)ᵀ", dW1), ("dJ/db(1) = δ(2)", db1),
             ("dJ/da(1) = W(1)ᵀ δ(2)", da1)]
    grads = {"0.weight": dW1, "0.bias": db1, "2.weight": dW2, "2.bias": db2, "x": da1}
    return steps, grads


def build_model(backend):
    """The network with :data:`WEIGHTS`, in float64 on ``backend``."""
    model = Sequential(Linear(3, 2), Sigmoid(), Linear(2, 1), dtype="float64").to(backend)
    model.load_state_dict({k: np.array(v, dtype=np.float64) for k, v in WEIGHTS.items()})
    return model


def by_backward(backend):
    """The same gradients from ``model.backward``: ``({name: array}, model, x, f(x))``."""
    model = build_model(backend)
    x = backend.asarray(X[None, :])
    loss_fn = MSELoss()
    f = model(x)
    loss_fn(f, backend.asarray([[Y]], dtype=np.float64))
    grad_x = to_numpy(model.backward(loss_fn.backward()))[0].copy()
    grads = {name: to_numpy(p.grad).copy() for name, p in model.named_parameters()}
    grads["x"] = grad_x
    return grads, model, x, to_numpy(f).copy()


def run(backend, fast=False) -> BackpropResult:
    """(``fast`` changes nothing: the network is tiny.)"""
    steps, hand = by_hand()
    library, model, x, f = by_backward(backend)
    result = BackpropResult(steps=steps, by_hand=hand, by_backward=library)
    result.largest_difference = max(float(np.max(np.abs(hand[k] - library[k]))) for k in hand)
    try:
        gradcheck(model, x)
        gradcheck(MSELoss(), backend.asarray(f), backend.asarray([[Y]], dtype=np.float64))
        result.gradcheck = "gn.gradcheck passes (central differences agree with backward)"
    except GradcheckError as exc:
        result.gradcheck = f"gn.gradcheck FAILS: {str(exc).splitlines()[0]}"
    result.conclusion = [
        f"by hand = model.backward for dJ/dW, dJ/db of both layers and dJ/dx (largest "
        f"difference {result.largest_difference:.1e}); {result.gradcheck}"]
    return result


# -- figure -----------------------------------------------------------------------------
NODES = {"x1": (0, 2), "x2": (0, 1), "x3": (0, 0), "h1": (1, 1.5), "h2": (1, 0.5),
         "f": (2, 1), "J": (3, 1)}
RADIUS = 0.2


def _graph(ax, result):
    """The network: each node's forward value (blue) above its gradient (red)."""
    steps = dict(result.steps)
    a1, a2 = steps["a(1) = x"], steps["a(2) = g(z(2)), g = sigmoid"]
    f = steps["f(x) = z(3) = W(2) a(2) + b(2)"][0]
    grads = result.by_hand
    delta2 = grads["0.bias"]
    labels = {"x1": (a1[0], grads["x"][0]), "x2": (a1[1], grads["x"][1]),
              "x3": (a1[2], grads["x"][2]), "h1": (a2[0], delta2[0]),
              "h2": (a2[1], delta2[1]), "f": (f, grads["2.bias"][0]),
              "J": (steps[J_STEP], 1.0)}
    edges = [(i, h) for i in ("x1", "x2", "x3") for h in ("h1", "h2")]
    edges += [("h1", "f"), ("h2", "f"), ("f", "J")]
    for a, b in edges:
        (xa, ya), (xb, yb) = NODES[a], NODES[b]
        ax.annotate("", (xb - RADIUS, yb), (xa + RADIUS, ya),
                    arrowprops={"arrowstyle": "->", "color": "0.6"})
    names = {"h1": "a1(2)", "h2": "a2(2)", "f": "f(x)", "J": "J"}
    grad_names = {"h1": "δ", "h2": "δ", "f": "δ", "J": "dJ/dJ"}
    for node, (x, y) in NODES.items():
        ax.add_patch(plotting.pyplot().Circle((x, y), RADIUS, fill=False, linewidth=1.5))
        ax.text(x, y, names.get(node, node), ha="center", va="center", fontsize=8)
        value, grad = labels[node]
        ax.text(x, y + RADIUS + 0.04, f"{value:.3g}", ha="center", color="tab:blue",
                fontsize=9)
        ax.text(x, y - RADIUS - 0.04, f"{grad_names.get(node, 'dJ/dx')} {grad:.3g}",
                ha="center", va="top", color="tab:red", fontsize=9)
    ax.set_xlim(-0.5, 3.5)
    ax.set_ylim(-0.6, 2.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("forward values (blue), backward gradients (red)", fontsize=10)


def plot(result, path):
    fig, axes = plotting.panels(2, "Backpropagation: " + TITLE, widths=(1.2, 2.0))
    _graph(axes[0], result)
    axes[1].axis("off")
    axes[1].text(0, 1, "\n".join(result.report()[:-1]), family="monospace", fontsize=9,
                 va="top", transform=axes[1].transAxes)
    axes[1].set_title("the steps, as printed", fontsize=10)
    return plotting.save(fig, path)
