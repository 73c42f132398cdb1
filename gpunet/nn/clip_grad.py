"""Gradient clipping as ``torch.nn.utils`` defines it: :func:`clip_grad_norm_` and
:func:`clip_grad_value_`, and :class:`NormClipper`, the clipping step of ``fit``.

The gradients of a model's parameters are one flat buffer, so clipping a whole model is one
pass over it on the device (``ops.grad_norm`` then ``ops.clip_by_norm``: no host
synchronisation, capturable in a CUDA graph); any other set of parameters is joined into one
array first and written back.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import backend_of
from ..checks import check_number
from .module import Module
from .parameter import Parameter


def _parameter_list(parameters, name) -> list:
    """``parameters`` (one Parameter or an iterable of them) as a list."""
    if isinstance(parameters, Parameter):
        return [parameters]
    if isinstance(parameters, Module):
        raise TypeError(f"{name} expects parameters, got the model itself "
                        f"({type(parameters).__name__}); pass model.parameters()")
    params = list(parameters)
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{name} expects gpunet Parameters (model.parameters()), got "
                            f"{type(p).__name__} at position {i}")
    grads = {(backend_of(p.grad).name, p.grad.dtype) for p in params}
    if len(grads) > 1:
        raise TypeError(f"{name} expects the gradients of one device and dtype, got "
                        f"{sorted((d, str(t)) for d, t in grads)}")
    return params


def _norm_type(norm_type) -> float:
    try:
        p = float(norm_type)
    except (TypeError, ValueError):
        p = math.nan
    if not p > 0:  # NaN included
        raise ValueError(f"norm_type must be a number > 0 or inf (e.g. 2.0, 1.0, 'inf'), got "
                         f"{norm_type!r}")
    return p


def _gradients(params):
    """``(grad, write_back)``: the flat gradient buffer itself when ``params`` are all of it
    (``write_back`` None), else a joined copy and the function that writes it back."""
    flat = params[0].flat
    if (flat is not None and flat.params[0].flat is flat and len(params) == len(flat.params)
            and {id(p) for p in params} == {id(p) for p in flat.params}):
        return flat.grad, None
    joined = backend_of(params[0].grad).xp.concatenate([p.grad.reshape(-1) for p in params])

    def write_back():
        offset = 0
        for p in params:
            p.grad[...] = joined[offset:offset + p.grad.size].reshape(p.grad.shape)
            offset += p.grad.size

    return joined, write_back


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                    foreach=None):
    """Scale the gradients of ``parameters`` in place so that their total ``norm_type``-norm
    (over all of them, as one vector) is at most ``max_norm``: each is multiplied by
    ``min(max_norm / (norm + 1e-6), 1)``. Returns the norm before clipping, a 0-d array on
    the gradients' device (``float(norm)`` reads it), as ``torch.nn.utils.clip_grad_norm_``.

    ``norm_type``: p > 0 or ``inf`` (``"inf"``); ``error_if_nonfinite``: raise RuntimeError
    (before scaling) when the norm is NaN or infinite, which reads it (a host
    synchronisation); otherwise a NaN norm makes every gradient NaN, as in torch.
    ``foreach`` is accepted for torch's signature and changes nothing: a model's gradients
    are one buffer, clipped in one pass.
    """
    params = _parameter_list(parameters, "clip_grad_norm_")
    max_norm = check_number(max_norm, "max_norm", 0)
    p = _norm_type(norm_type)
    if not params:
        return np.zeros((), np.float32)
    ops = backend_of(params[0].grad).ops
    grad, write_back = _gradients(params)
    norm = ops.xp.empty((), dtype=grad.dtype)
    ops.grad_norm(grad, p, norm)
    if error_if_nonfinite and not math.isfinite(float(norm)):
        raise RuntimeError(f"the total norm of order {p:g} of the gradients is {float(norm)}, "
                           f"so they cannot be clipped; pass error_if_nonfinite=False to scale "
                           f"them by it anyway")
    ops.clip_by_norm(grad, max_norm, norm)
    if write_back is not None:
        write_back()
    return norm


def clip_grad_value_(parameters, clip_value, foreach=None) -> None:
    """Clamp every gradient of ``parameters`` to ``[-clip_value, clip_value]`` in place, as
    ``torch.nn.utils.clip_grad_value_`` (NaN stays NaN; ``foreach`` changes nothing)."""
    params = _parameter_list(parameters, "clip_grad_value_")
    clip_value = check_number(clip_value, "clip_value", 0)
    if not params:
        return
    xp = backend_of(params[0].grad).xp
    grad, write_back = _gradients(params)
    xp.clip(grad, -clip_value, clip_value, out=grad)
    if write_back is not None:
        write_back()


class NormClipper:
    """``fit(clip_grad_norm=max_norm)``: each step, the flat gradient of ``flat`` (an
    optimizer's :class:`FlatBuffers`) clipped to 2-norm ``max_norm`` in place; the norm goes
    to a device array made once (``norm``), so a step stays free of host synchronisation
    and allocation, inside a captured graph too."""

    def __init__(self, flat, max_norm):
        self.max_norm = check_number(max_norm, "clip_grad_norm", 0, low_open=True)
        self.flat = flat
        self.ops = backend_of(flat.grad).ops
        self.norm = self.ops.xp.zeros((), dtype=flat.grad.dtype)

    def __call__(self) -> None:
        self.ops.grad_norm(self.flat.grad, 2.0, self.norm)
        self.ops.clip_by_norm(self.flat.grad, self.max_norm, self.norm)
