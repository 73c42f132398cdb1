"""The public boundary: an array that a public call hands to the user is the user's.

Layers and losses compute into workspace buffers that their next call overwrites. That reuse
stays inside the library: a call made by the user (``model(x)``, ``model.backward(g)``,
``loss_fn.backward()``) returns a copy, while the same calls made from inside another
module's ``forward``/``backward`` (the layers of a model), or inside :func:`inside` (``fit``,
``evaluate``, ``predict``), return the buffers themselves. Only the outermost call copies, so a
model's forward pass costs one copy of its output, not one per layer.
"""
from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np

_state = threading.local()


def _depth() -> int:
    return getattr(_state, "depth", 0)


@contextlib.contextmanager
def inside():
    """Calls in this block are the library's own: they hand back reused buffers, uncopied.
    For loops that consume each result before the next call (a training step)."""
    _state.depth = _depth() + 1
    try:
        yield
    finally:
        _state.depth -= 1


def _is_array(a) -> bool:
    return isinstance(a, np.ndarray) or type(a).__module__.startswith("cupy")


def owned(result):
    """``result`` (an array, or a tuple of them) as copies the caller owns."""
    if _is_array(result):
        return result.copy()
    if isinstance(result, tuple):
        return tuple(a.copy() if _is_array(a) else a for a in result)
    return result


def public(method):
    """Wrap ``method`` so that a call from outside the library returns :func:`owned` arrays
    and calls nested in it (the layers it runs) return buffers."""
    if getattr(method, "__gpunet_public__", False):
        return method

    @functools.wraps(method)
    def call(*args, **kwargs):
        depth = _depth()
        _state.depth = depth + 1
        try:
            result = method(*args, **kwargs)
        finally:
            _state.depth = depth
        return owned(result) if depth == 0 else result

    call.__gpunet_public__ = True
    return call
