"""Numerical gradient check: central differences in float64 against ``backward``.

Each checked tensor (a module's input and parameters, or a loss's prediction) is compared in
one or both of two ways:

- **elementwise**: every entry is moved by ``±eps`` in turn; exact per entry, but two forward
  passes per entry.
- **directional** (as Chainer's ``check_backward``): for a few seeded random unit directions
  ``d``, the analytic directional derivative ``sum(grad * d)`` is compared with
  ``(f(x + eps d) - f(x - eps d)) / 2 eps``; two forward passes per direction at any size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import backend_of, manual_seed, to_numpy
from .losses import Loss
from .module import Module

MODES = ("auto", "elementwise", "directional", "both")
MAX_ELEMENTWISE = 1024  # "auto": tensors up to this size elementwise, larger ones directional
DIRECTIONS = 3          # random directions per tensor in a directional check
SHOWN = 5               # worst entries (or directions) printed per failing tensor


@dataclass
class TensorReport:
    """One tensor's check; ``rows`` are ``(where, analytic, numeric)``, worst first."""

    name: str
    shape: tuple
    how: str
    error: float
    rows: list

    def text(self) -> str:
        """The tensor, its relative error and a table of its worst rows."""
        if self.how == "elementwise":
            label, note = "index", ""
        else:
            label, note = "direction", (" (analytic sum(grad * d), numeric "
                                        "(f(x + eps d) - f(x - eps d)) / 2 eps)")
        lines = [f"{self.name} {self.shape}, {self.how}: relative error {self.error:.3g}{note}",
                 f"  {label:<14}{'analytic':>20}{'numeric':>20}{'difference':>14}"]
        for where, analytic, numeric in self.rows:
            lines.append(f"  {str(where):<14}{analytic:>20.12g}{numeric:>20.12g}"
                         f"{analytic - numeric:>14.4g}")
        return "\n".join(lines)


class GradcheckError(AssertionError):
    """The analytic and numerical gradients of some tensor disagree.

    ``failures`` holds a :class:`TensorReport` for each failing tensor, worst first.
    """

    def __init__(self, message, failures=()):
        super().__init__(message)
        self.failures = list(failures)


def gradcheck(target, *inputs, eps=1e-6, tol=1e-6, seed=0, mode="auto",
              directions=DIRECTIONS, max_elementwise=MAX_ELEMENTWISE):
    """Check ``backward`` of a module or a loss against central differences; True or raise.

    - ``gradcheck(module, x)``: the objective is ``sum(module(x) * R)`` for a fixed random
      ``R``; checks d/dx and every parameter's ``grad``.
    - ``gradcheck(loss_fn, prediction, target)``: checks d loss / d prediction.

    ``mode``: ``"auto"`` (default) checks tensors of at most ``max_elementwise`` entries
    elementwise and larger ones along ``directions`` random unit directions;
    ``"elementwise"``, ``"directional"`` or ``"both"`` force the way for every tensor.

    Everything must be float64 (build with ``dtype="float64"``). A tensor passes when its
    relative error is below ``tol``: ``|a - n| / max(|a|, |n|)`` over the whole tensor
    elementwise; per direction, ``|a - n| / max(|a|, |n|, |grad| / sqrt(size))``, where the
    last term (the typical size of a random directional derivative) keeps a direction nearly
    orthogonal to the gradient from magnifying rounding noise. On failure a
    :class:`GradcheckError` lists every failing tensor with its worst entries (index, analytic,
    numeric, difference) or directions. ``seed`` fixes ``R``, the directions, and the RNG
    before every forward pass, so dropout masks repeat and the result is deterministic.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(directions, bool) or not isinstance(directions, int) or directions < 1:
        raise ValueError(f"directions must be a positive integer, got {directions!r}")
    if isinstance(target, Module):
        checks = _module_checks(target, *inputs, seed=seed)
    elif isinstance(target, Loss):
        checks = _loss_checks(target, *inputs)
    else:
        raise TypeError(f"gradcheck expects a gpunet Module or Loss, got "
                        f"{type(target).__name__}")
    rng = np.random.default_rng(seed)
    reports = []
    for name, objective, array, analytic in checks:
        if array.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 for {name}, got {array.dtype}; build "
                            f"the model with dtype='float64' (or model.to(dtype='float64'))")
        analytic = to_numpy(analytic)
        for how in _ways(mode, array.size, max_elementwise):
            if how == "elementwise":
                reports.append(_elementwise(name, objective, array, analytic, eps))
            else:
                reports.append(_directional(name, objective, array, analytic, eps,
                                            _unit_directions(rng, array.shape, directions)))
    failures = sorted((r for r in reports if not r.error <= tol),  # NaN fails too
                      key=lambda r: -r.error)
    if failures:
        raise GradcheckError(_message(failures, len(checks), tol), failures)
    return True


def _ways(mode, size, max_elementwise):
    """The checks ("elementwise", "directional") that ``mode`` asks of a tensor of ``size``."""
    if mode == "auto":
        return ("elementwise",) if size <= max_elementwise else ("directional",)
    return ("elementwise", "directional") if mode == "both" else (mode,)


def _message(failures, n_tensors, tol):
    head = (f"gradient check failed (tolerance {tol:.3g}): {len(failures)} check(s) off "
            f"among {n_tensors} tensor(s), worst first")
    return "\n".join([head] + [r.text() for r in failures])


def _difference(objective, array, where, plus, minus):
    """f(array[where] = plus) - f(array[where] = minus); ``array`` is restored exactly."""
    original = array[where].copy()
    array[where] = plus
    f_plus = objective()
    array[where] = minus
    f_minus = objective()
    array[where] = original
    return f_plus - f_minus


def _elementwise(name, objective, array, analytic, eps):
    """Central difference on each entry of ``array`` in turn."""
    numeric = np.zeros(array.shape)
    for index in np.ndindex(array.shape):
        x = float(array[index])
        plus, minus = x + eps, x - eps
        numeric[index] = _difference(objective, array, index, plus, minus) / (plus - minus)
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric), 1e-8)
    error = float(np.linalg.norm(analytic - numeric) / scale)
    worst = np.argsort(-np.abs(analytic - numeric), axis=None, kind="stable")[:SHOWN]
    indices = [tuple(int(i) for i in np.unravel_index(j, array.shape)) for j in worst]
    rows = [(index, float(analytic[index]), float(numeric[index])) for index in indices]
    return TensorReport(name, tuple(array.shape), "elementwise", error, rows)


def _unit_directions(rng, shape, count):
    """``count`` seeded standard-normal directions of ``shape``, each of unit norm."""
    directions = rng.standard_normal((count, *shape))
    norms = np.linalg.norm(directions.reshape(count, -1), axis=1)
    return directions / np.maximum(norms, 1e-300).reshape(count, *(1,) * len(shape))


def _directional(name, objective, array, analytic, eps, directions):
    """Central difference along each direction against ``sum(analytic * step) / eps``."""
    backend = backend_of(array)
    x = array.copy()
    typical = np.linalg.norm(analytic) / np.sqrt(max(array.size, 1))
    rows, errors = [], []
    for k, d in enumerate(directions):
        move = eps * backend.asarray(d)
        plus, minus = x + move, x - move
        step = to_numpy(plus - minus) / 2  # the step taken, rounding included
        numeric = _difference(objective, array, Ellipsis, plus, minus) / (2 * eps)
        analytic_k = float(np.sum(analytic * step)) / eps
        rows.append((k, analytic_k, numeric))
        errors.append(abs(analytic_k - numeric) /
                      max(abs(analytic_k), abs(numeric), typical, 1e-8))
    order = np.argsort(errors, kind="stable")[::-1][:SHOWN]
    return TensorReport(name, tuple(array.shape), "directional", float(max(errors)),
                        [rows[i] for i in order])


def _module_checks(module, x, *, seed):
    if module.dtype != np.float64:
        raise TypeError(f"gradcheck needs a float64 module, got {module.dtype}; build it with "
                        f"dtype='float64' (or module.to(dtype='float64'))")
    projection = backend_of(x).asarray(np.random.default_rng(seed).standard_normal(
        module(x).shape))

    def objective():
        manual_seed(seed)
        return float((module(x) * projection).sum())

    objective()
    grad_x = module.backward(projection).copy()
    checks = [("the input", objective, x, grad_x)]
    for name, p in module.named_parameters():
        checks.append((name, objective, p.data, p.grad.copy()))
    return checks


def _loss_checks(loss_fn, prediction, target):
    def objective():
        return float(loss_fn(prediction, target))

    objective()
    return [("the prediction", objective, prediction, loss_fn.backward().copy())]
