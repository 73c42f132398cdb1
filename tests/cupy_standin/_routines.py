"""CuPy's array functions (copies, indexing, reductions, comparisons) over the stand-in's
arrays, with CuPy 14.2's signatures. Each reads and writes device memory through the stream,
so a capture records it; each result is a new allocation (refused inside a capture)."""
from __future__ import annotations

import builtins

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from . import _memory, _streams
from ._creation import from_host, new_result
from ._ndarray import ndarray
from ._ufuncs import operand


# -- copies and indexing ----------------------------------------------------------------------
def copyto(dst, src, casting='same_kind', where=None):
    if where is not None:
        raise TypeError("the CuPy stand-in's copyto takes no where=")
    if isinstance(src, np.ndarray):
        if src.size != 1:
            raise ValueError('non-scalar numpy.ndarray cannot be used for copyto')
        src = src.squeeze()[()]
    src_dtype = src.dtype if isinstance(src, (ndarray, np.generic)) else None
    if src_dtype is not None and not np.can_cast(src_dtype, dst.dtype, casting):
        raise TypeError(f'Cannot cast {src_dtype} to {dst.dtype} in {casting} casting mode')
    if isinstance(src, ndarray) and np.broadcast_shapes(src.shape, dst.shape) != dst.shape:
        raise ValueError(f'could not broadcast input array from shape {src.shape} into '
                         f'shape {dst.shape}')
    source, target = operand(src), dst._a
    _streams.issue(lambda: np.copyto(target, source, casting='unsafe'))


def take(a, indices, axis=None, out=None):
    index = indices._a if isinstance(indices, ndarray) else np.asarray(indices)
    if not isinstance(indices, (ndarray, int, np.integer)):
        _memory.check_transfer("H2D transfers")
    shape = np.take(np.lib.stride_tricks.as_strided(np.zeros(1, a.dtype), a.shape,
                                                    (0,) * a.ndim), np.zeros(index.shape,
                                                                             np.intp),
                    axis=axis).shape
    source = a._a

    def fill(target):
        np.take(source, index, axis=axis, out=target, mode='wrap')
    if out is None:
        return new_result(shape, a.dtype, fill)
    if out.shape != shape:
        raise ValueError(f'output shape {out.shape} is not the result shape {shape}')
    target = out._a
    _streams.issue(lambda: fill(target))
    return out


def where(condition, x=None, y=None):
    if x is None and y is None:
        return nonzero(condition)
    from . import _ufuncs
    shape = _ufuncs.broadcast_shape([condition, x, y])
    dtype = np.result_type(*[_ufuncs.probe(v) for v in (x, y)])
    parts = [operand(v) for v in (condition, x, y)]
    return new_result(shape, dtype, lambda out: np.copyto(out, np.where(*parts)))


def may_share_memory(a, b, max_work=None):
    """Whether the memory bounds overlap (``cupy/_misc/memory_ranges.py`` line 9: host-side
    arithmetic on the pointers, no device access)."""
    if max_work is not None:
        raise NotImplementedError('Only supported for `max_work` is `None`')
    return bool(np.may_share_memory(a._a, b._a))


def shares_memory(a, b, max_work=None):
    """Exact overlap: CuPy runs a kernel and reads the answer on the host (line 32)."""
    if a is b and a.size != 0:
        return True
    if max_work == 'MAY_SHARE_BOUNDS':
        return may_share_memory(a, b)
    _memory.check_transfer("D2H transfers")
    return bool(np.shares_memory(a._a, b._a))


def _host_count(what):
    """A result whose size depends on the values: CuPy reads a count on the host."""
    _memory.check_transfer(what)


def nonzero(a):
    _host_count("synchronous API calls")
    return tuple(from_host(i) for i in np.nonzero(a._a))


def flatnonzero(a):
    _host_count("synchronous API calls")
    return from_host(np.flatnonzero(a._a))


def concatenate(tup, axis=0, out=None, *, dtype=None, casting='same_kind'):
    parts = [operand(a) for a in tup]
    probe = np.concatenate([np.lib.stride_tricks.as_strided(np.zeros(1, p.dtype), p.shape,
                                                            (0,) * p.ndim) for p in parts],
                           axis=axis, dtype=dtype, casting=casting)

    def fill(target):
        np.concatenate(parts, axis=axis, out=target, dtype=dtype, casting=casting)
    if out is None:
        return new_result(probe.shape, probe.dtype, fill)
    target = out._a
    _streams.issue(lambda: fill(target))
    return out


def stack(tup, axis=0, out=None, *, dtype=None, casting='same_kind'):
    return concatenate([expand_dims(a, axis) for a in tup], axis, out, dtype=dtype,
                       casting=casting)


def expand_dims(a, axis):
    return a._derived(np.expand_dims(a._a, axis))


def broadcast_to(array, shape):
    return array._derived(np.broadcast_to(array._a, shape))


def reshape(a, newshape, order='C'):
    return a.reshape(newshape, order=order)


def ravel(a, order='C'):
    return a.ravel(order)


def transpose(a, axes=None):
    return a.transpose(*(() if axes is None else axes))


def squeeze(a, axis=None):
    return a.squeeze(axis)


def repeat(a, repeats, axis=None):
    source = a._a
    shape = np.repeat(np.zeros(a.shape, np.bool_), repeats, axis).shape
    return new_result(shape, a.dtype, lambda out: np.copyto(out, np.repeat(source, repeats,
                                                                           axis)))


# -- reductions -------------------------------------------------------------------------------
def _reduction(function, a, axis, out, keepdims, **kwargs):
    if not isinstance(a, ndarray):
        raise TypeError(f'Unsupported type {type(a)}')
    axes = tuple(range(a.ndim)) if axis is None else normalize_axis_tuple(axis, a.ndim)
    shape = tuple(1 if i in axes else d for i, d in enumerate(a.shape)) if keepdims \
        else tuple(d for i, d in enumerate(a.shape) if i not in axes)
    with np.errstate(all='ignore'):
        probe = np.zeros((1,) * builtins.max(a.ndim, 1), a.dtype)
        dtype = np.asarray(function(probe, **kwargs)).dtype
    source = a._a

    def fill(target):
        with np.errstate(all='ignore'):
            result = function(source, axis=axis, keepdims=keepdims, **kwargs)
        np.copyto(target, result, casting='unsafe')
    if out is None:
        return new_result(shape, dtype, fill)
    if out.shape != shape:
        raise ValueError(f'Output shape {out.shape} is not the reduction shape {shape}')
    target = out._a
    _streams.issue(lambda: fill(target))
    return out


def sum(a, axis=None, dtype=None, out=None, keepdims=False):  # noqa: A001
    return _reduction(np.sum, a, axis, out, keepdims, dtype=dtype)


def prod(a, axis=None, dtype=None, out=None, keepdims=False):
    return _reduction(np.prod, a, axis, out, keepdims, dtype=dtype)


def mean(a, axis=None, dtype=None, out=None, keepdims=False):
    return _reduction(np.mean, a, axis, out, keepdims, dtype=dtype)


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    return _reduction(np.var, a, axis, out, keepdims, dtype=dtype, ddof=ddof)


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    return _reduction(np.std, a, axis, out, keepdims, dtype=dtype, ddof=ddof)


def amax(a, axis=None, out=None, keepdims=False):
    return _reduction(np.max, a, axis, out, keepdims)


def amin(a, axis=None, out=None, keepdims=False):
    return _reduction(np.min, a, axis, out, keepdims)


max = amax  # noqa: A001
min = amin  # noqa: A001


def all(a, axis=None, out=None, keepdims=False):  # noqa: A001
    return _reduction(np.all, a, axis, out, keepdims)


def any(a, axis=None, out=None, keepdims=False):  # noqa: A001
    return _reduction(np.any, a, axis, out, keepdims)


def argmax(a, axis=None, dtype=None, out=None, keepdims=False):
    return _reduction(np.argmax, a, axis, out, keepdims)


def argmin(a, axis=None, dtype=None, out=None, keepdims=False):
    return _reduction(np.argmin, a, axis, out, keepdims)


def count_nonzero(a, axis=None):
    return _reduction(np.count_nonzero, a, axis, None, False)


def cumsum(a, axis=None, dtype=None, out=None):
    source = a._a
    shape = a.shape if axis is not None else (a.size,)
    result_dtype = np.cumsum(np.zeros(1, a.dtype), dtype=dtype).dtype

    def fill(target):
        np.cumsum(source, axis=axis, dtype=dtype, out=target)
    if out is None:
        return new_result(shape, result_dtype, fill)
    target = out._a
    _streams.issue(lambda: fill(target))
    return out


def clip(a, a_min, a_max, out=None):
    from . import _ufuncs
    if a_min is None:
        return _ufuncs.minimum(a, a_max, out=out)
    if a_max is None:
        return _ufuncs.maximum(a, a_min, out=out)
    low = _ufuncs.maximum(a, a_min, out=out)
    return _ufuncs.minimum(low, a_max, out=low)


def argsort(a, axis=-1, kind=None):
    source = a._a
    return new_result(a.shape, np.intp, lambda out: np.copyto(out, np.argsort(
        source, axis=axis, kind='stable')))


def sort(a, axis=-1, kind=None):
    source = a._a
    return new_result(a.shape, a.dtype, lambda out: np.copyto(out, np.sort(source, axis)))


def _compare(function, *args, **kwargs):
    parts = [operand(v) for v in args]
    return new_result((), np.bool_, lambda out: out.fill(function(*parts, **kwargs)))


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return _compare(np.allclose, a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)


def array_equal(a1, a2, equal_nan=False):
    return _compare(np.array_equal, a1, a2, equal_nan=equal_nan)


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    from . import _ufuncs
    parts = [operand(v) for v in (a, b)]
    return new_result(_ufuncs.broadcast_shape([a, b]), np.bool_, lambda out: np.copyto(
        out, np.isclose(*parts, rtol=rtol, atol=atol, equal_nan=equal_nan)))
