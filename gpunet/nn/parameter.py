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

    Once packed into a model's flat buffer, ``data`` and ``grad`` are views of it, and they
    stay so: ``p.data = a`` and ``p.grad = a`` copy ``a`` into the parameter's slot (an error
    names the expected shape, dtype or device when ``a`` does not fit), as do
    ``p.data[...] = a``, ``p.grad *= s`` and every other in-place change. The optimizer reads
    the flat buffer, so whichever way a value is written, it is the value trained.
    """

    __slots__ = ("_data", "_grad", "flat")

    def __init__(self, data):
        self._data = data
        self._grad = backend_of(data).xp.zeros_like(data)
        self.flat = None  # the FlatBuffers this parameter is a view of, if any

    @property
    def data(self):
        """The values (a view of the flat buffer once packed); assigning copies into it."""
        return self._data

    @data.setter
    def data(self, value):
        _copy_into(self._data, value, "data")

    @property
    def grad(self):
        """The gradient of the last ``backward``; assigning copies into it."""
        return self._grad

    @grad.setter
    def grad(self, value):
        _copy_into(self._grad, value, "grad")

    def bind(self, data, grad, flat=None):
        """Make ``data`` and ``grad`` the parameter's own arrays (the library's packing and
        moving of parameters; user code assigns values instead)."""
        self._data, self._grad, self.flat = data, grad, flat

    @property
    def shape(self):
        return self.data.shape

    def size(self, dim=None):
        """The shape, or the length of dimension ``dim`` (as ``torch.Tensor.size``)."""
        return tuple(self.data.shape) if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        """The number of values: ``sum(p.numel() for p in model.parameters())`` counts a
        model's parameters."""
        return int(self.data.size)

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
            self.bind(state["data"], state["grad"])
            return
        start, shape = state["offset"], state["shape"]
        stop = start + math.prod(shape)
        self.bind(flat.data[start:stop].reshape(shape), flat.grad[start:stop].reshape(shape),
                  flat)


def _copy_into(target, value, what):
    """``target[...] = value`` for ``p.data = value`` / ``p.grad = value``, after checking that
    ``value`` is an array of the parameter's device, shape and dtype."""
    if value is target:  # p.grad *= s ends by assigning p.grad to itself
        return
    backend = backend_of(target)
    expected = (f"an array of shape {tuple(target.shape)} and dtype {target.dtype} on the "
                f"{backend.name}")
    if value is None:
        raise TypeError(f"Parameter.{what} cannot be set to None: it is a slot of the "
                        f"model's flat {what} buffer; to zero it, p.{what}[...] = 0 (or "
                        f"optimizer.zero_grad() for every gradient)")
    if not isinstance(value, backend.xp.ndarray):
        module = type(value).__module__.split(".")[0]
        convert = "gn.to_numpy(a)" if backend.name == "cpu" else "cupy.asarray(a)"
        fix = (f"to fill it with one value: p.{what}[...] = value" if module == "builtins"
               else f"convert it first: {convert}")
        raise TypeError(f"Parameter.{what} expects {expected}, got {module}."
                        f"{type(value).__name__}; {fix}")
    if tuple(value.shape) != tuple(target.shape):
        raise ValueError(f"Parameter.{what} expects {expected}, got shape "
                         f"{tuple(value.shape)}; a parameter keeps its shape (to change it, "
                         f"assign a new gn.Parameter to the layer and create the optimizer "
                         f"again)")
    if value.dtype != target.dtype:
        raise TypeError(f"Parameter.{what} expects {expected}, got dtype {value.dtype}; "
                        f"convert it: value.astype({target.dtype.name!r})")
    if backend.xp.may_share_memory(target, value):  # e.g. p.data = p.data.T
        value = value.copy()
    target[...] = value


class FlatBuffers:
    """One contiguous data array and one gradient array backing a list of parameters.

    ``replaced`` lists, in words, the parameters that a module attribute assignment (or
    ``del``) took out of their model after packing: an optimizer over this buffer refuses
    to step then, as it would train the old parameters and leave the new ones untouched.
    """

    __slots__ = ("data", "grad", "params", "replaced")

    def __init__(self, data, grad, params, replaced=()):
        self.data = data
        self.grad = grad
        self.params = params
        self.replaced = list(replaced)

    def __reduce__(self):
        # the arrays first, the parameters (which point back here) once the buffer exists
        return FlatBuffers, (self.data, self.grad, [], self.replaced), {"params": self.params}

    def __setstate__(self, state):
        self.params = state["params"]


def flatten_parameters(params, xp) -> FlatBuffers:
    """Rebind ``params`` as views of one data and one grad buffer; reuse an existing one.

    If the parameters already are, in this order, the whole of one :class:`FlatBuffers`,
    nothing moves (and replacements noted on it no longer apply). Otherwise their values are copied into fresh buffers.
    """
    params = list(params)
    if not params:
        raise ValueError("expected at least one parameter, got an empty parameter list")
    existing = params[0].flat
    if existing is not None and existing.params == params:
        existing.replaced.clear()  # the parameters are the buffer's again (e.g. put back)
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
        n, shape = p.data.size, p.data.shape
        data[offset:offset + n] = p.data.reshape(-1)
        p.bind(data[offset:offset + n].reshape(shape), grad[offset:offset + n].reshape(shape),
               buffers)
        offset += n
    return buffers
