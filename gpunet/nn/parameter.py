"""Trainable parameters and the flat buffers that hold them.

All parameters of a model live in one contiguous array (and their gradients in another), each
:class:`Parameter` holding reshaped views into it, so one kernel can update every parameter and
a future all-reduce is a single call.
"""
from __future__ import annotations

import math

from ..backend import backend_of


class Parameter:
    """A trainable array ``data`` and its gradient ``grad`` (same shape and dtype).

    ``grad`` is overwritten, not accumulated, by each ``backward`` call: it always holds the
    gradient of the most recent batch's loss.
    """

    __slots__ = ("data", "grad", "flat")

    def __init__(self, data):
        self.data = data
        self.grad = backend_of(data).xp.zeros_like(data)
        self.flat = None  # the FlatBuffers this parameter is a view of, if any

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"

    def __getstate__(self):
        """A parameter packed in a flat buffer pickles as its place there, so that after
        unpickling (or ``copy.deepcopy``) it is again a view of the copied buffer."""
        flat = self.flat
        if flat is not None and getattr(self.data, "base", None) is flat.data:
            offset = 0
            for p in flat.params:
                if p is self:
                    return {"flat": flat, "offset": offset, "shape": tuple(self.data.shape)}
                offset += p.data.size
        return {"flat": None, "data": self.data, "grad": self.grad}

    def __setstate__(self, state):
        flat = state["flat"]
        if flat is None:
            self.data, self.grad, self.flat = state["data"], state["grad"], None
            return
        start, shape = state["offset"], state["shape"]
        stop = start + math.prod(shape)
        self.data = flat.data[start:stop].reshape(shape)
        self.grad = flat.grad[start:stop].reshape(shape)
        self.flat = flat


class FlatBuffers:
    """One contiguous data array and one gradient array backing a list of parameters."""

    __slots__ = ("data", "grad", "params")

    def __init__(self, data, grad, params):
        self.data = data
        self.grad = grad
        self.params = params

    def __reduce__(self):
        # the arrays first, the parameters (which point back here) once the buffer exists
        return FlatBuffers, (self.data, self.grad, []), {"params": self.params}

    def __setstate__(self, state):
        self.params = state["params"]


def flatten_parameters(params, xp) -> FlatBuffers:
    """Rebind ``params`` as views of one data and one grad buffer; reuse an existing one.

    If the parameters already are, in this order, the whole of one :class:`FlatBuffers`,
    nothing moves. Otherwise their values are copied into fresh buffers.
    """
    params = list(params)
    if not params:
        raise ValueError("expected at least one parameter, got an empty parameter list")
    existing = params[0].flat
    if existing is not None and existing.params == params:
        return existing
    dtypes = {p.data.dtype for p in params}
    if len(dtypes) != 1:
        raise TypeError(f"parameters must share one dtype, got {sorted(map(str, dtypes))}")
    total = sum(p.data.size for p in params)
    dtype = dtypes.pop()
    data = xp.empty(total, dtype=dtype)
    grad = xp.zeros(total, dtype=dtype)
    buffers = FlatBuffers(data, grad, params)
    offset = 0
    for p in params:
        n = p.data.size
        data[offset:offset + n] = p.data.reshape(-1)
        p.data = data[offset:offset + n].reshape(p.data.shape)
        p.grad = grad[offset:offset + n].reshape(p.data.shape)
        p.flat = buffers
        offset += n
    return buffers
