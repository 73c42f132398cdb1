"""CuPy's array creation and host transfers over the stand-in's memory (CuPy 14.2's
signatures): every new array is an allocation (refused inside a capture), every copy from the
host a transfer (refused on a capturing stream, ``cupy/cuda/memory.pyx``)."""
from __future__ import annotations

import builtins

import numpy as np

from . import _memory, _streams
from ._ndarray import ndarray


def new_result(shape, dtype, fill, order='C'):
    """A new array (allocated now) whose contents ``fill(numpy_view)`` writes on the stream."""
    out = ndarray(shape, dtype, order=order)
    target = out._a
    _streams.issue(lambda: fill(target))
    return out


def from_host(values: np.ndarray, what="H2D transfers"):
    """A device copy of host ``values`` (a transfer CuPy refuses inside a capture)."""
    _memory.check_transfer(what)
    out = ndarray(values.shape, values.dtype)
    out._a[...] = values
    return out


def to_device_operand(value, dtype):
    """A value written into a device array: a device array's view or a host copy."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, (np.ndarray, list, tuple)):
        _memory.check_transfer("H2D transfers")
    return np.array(value, dtype=dtype)


# -- creation ---------------------------------------------------------------------------------
def empty(shape, dtype=float, order='C'):
    return ndarray(shape, dtype, order=order)


def _filled(shape, dtype, value, order='C'):
    out = ndarray(shape, dtype, order=order)
    out.fill(value)
    return out


def zeros(shape, dtype=float, order='C'):
    return _filled(shape, dtype, 0, order)


def ones(shape, dtype=float, order='C'):
    return _filled(shape, dtype, 1, order)


def full(shape, fill_value, dtype=None, order='C'):
    if dtype is None:
        dtype = fill_value.dtype if isinstance(fill_value, ndarray) else \
            np.array(fill_value).dtype
    return _filled(shape, dtype, fill_value, order)


def _like(a, dtype, order, shape):
    order = 'F' if order == 'F' or order in 'AK' and a.flags.f_contiguous \
        and not a.flags.c_contiguous else 'C'
    return (a.shape if shape is None else shape), (a.dtype if dtype is None else dtype), order


def empty_like(prototype, dtype=None, order='K', subok=None, shape=None):
    return empty(*_like(prototype, dtype, order, shape))


def zeros_like(a, dtype=None, order='K', subok=None, shape=None):
    return zeros(*_like(a, dtype, order, shape))


def ones_like(a, dtype=None, order='K', subok=None, shape=None):
    return ones(*_like(a, dtype, order, shape))


def full_like(a, fill_value, dtype=None, order='K', subok=None, shape=None):
    shape, dtype, order = _like(a, dtype, order, shape)
    return full(shape, fill_value, dtype, order)


def arange(start, stop=None, step=1, dtype=None):
    values = np.arange(start, stop, step, dtype=dtype)
    return new_result(values.shape, values.dtype, lambda out: np.copyto(out, values))


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    values = np.linspace(start, stop, num, endpoint, retstep, dtype, axis)
    if retstep:
        values, step = values
        return new_result(values.shape, values.dtype, lambda out: np.copyto(out, values)), step
    return new_result(values.shape, values.dtype, lambda out: np.copyto(out, values))


def eye(N, M=None, k=0, dtype=float, order='C'):
    values = np.eye(N, M, k, dtype, order)
    return new_result(values.shape, values.dtype, lambda out: np.copyto(out, values))


def array(obj, dtype=None, copy=True, order='K', subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        out = obj.astype(obj.dtype if dtype is None else dtype, copy=bool(copy))
        return out if out.ndim >= ndmin else out.reshape((1,) * (ndmin - out.ndim) + out.shape)
    return from_host(np.array(obj, dtype=dtype, order=order, ndmin=ndmin))


def asarray(a, dtype=None, order=None, *, blocking=False):
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    return from_host(np.asarray(a, dtype=dtype, order=order))


def ascontiguousarray(a, dtype=None):
    a = asarray(a, dtype)
    return a if a.flags.c_contiguous else a.copy()


def asnumpy(a, stream=None, order='C', out=None, *, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    values = np.asarray(a, order=order)
    if out is not None:
        out[...] = values
        return out
    return values


def get_array_module(*args):
    import cupy
    return cupy if builtins.any(isinstance(a, ndarray) for a in args) else np
