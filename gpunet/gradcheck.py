"""Numerical gradient check: central differences in float64 against ``backward``."""
from __future__ import annotations

import numpy as np

from .backend import backend_of, manual_seed, to_numpy
from .losses import Loss
from .module import Module


class GradcheckError(AssertionError):
    """The analytic and numerical gradients of some tensor disagree."""


def _relative_error(analytic, numeric):
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric), 1e-8)
    return float(np.linalg.norm(analytic - numeric) / scale)


def _numeric_grad(objective, array, eps):
    """d objective / d array by central differences, perturbing ``array`` in place."""
    grad = np.zeros(array.shape)
    flat = array.reshape(-1)
    for i in range(flat.size):
        original = flat[i].item()
        flat[i] = original + eps
        plus = objective()
        flat[i] = original - eps
        minus = objective()
        flat[i] = original
        grad.reshape(-1)[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(target, *inputs, eps=1e-6, tol=1e-6, seed=0):
    """Check ``backward`` of a module or a loss against central differences; True or raise.

    - ``gradcheck(module, x)``: the objective is ``sum(module(x) * R)`` for a fixed random
      ``R``; checks d/dx and every parameter's ``grad``.
    - ``gradcheck(loss_fn, prediction, target)``: checks d loss / d prediction.

    Everything must be float64 (build with ``dtype="float64"``). Each tensor's relative
    error ``|a - n| / max(|a|, |n|)`` must be below ``tol``. The RNG is reseeded with
    ``seed`` before every forward pass, so dropout masks repeat.
    """
    if isinstance(target, Module):
        checks = _module_checks(target, *inputs, seed=seed)
    elif isinstance(target, Loss):
        checks = _loss_checks(target, *inputs)
    else:
        raise TypeError(f"gradcheck expects a gpunet Module or Loss, got "
                        f"{type(target).__name__}")
    worst = None
    for name, objective, array, analytic in checks:
        if array.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 for {name}, got {array.dtype}; build "
                            f"the model with dtype='float64' (or model.to(dtype='float64'))")
        numeric = _numeric_grad(objective, array, eps)
        error = _relative_error(to_numpy(analytic), numeric)
        if worst is None or error > worst[1]:
            worst = (name, error)
    if worst is not None and worst[1] > tol:
        raise GradcheckError(f"gradient of {worst[0]} is off: relative error {worst[1]:.3g} "
                             f"> tolerance {tol:.3g}")
    return True


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
