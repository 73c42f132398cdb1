"""CuPy's array functions (creation, copies, indexing, reductions, GEMM) over the stand-in's
arrays, with CuPy 14.2's signatures. Each reads and writes device memory through the stream,
so a capture records it; each result is a new allocation (refused inside a capture)."""
from __future__ import annotations

import builtins

import numpy as np
from numpy.lib.array_utils import normalize_axis_tuple

from . import _memory, _streams
from ._ndarray import ndarray
from ._ufuncs import operand

COMPUTE_TYPE_TBD, COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_PEDANTIC = 0, 1, 2
COMPUTE_TYPE_FP16, COMPUTE_TYPE_FP32, COMPUTE_TYPE_FP64 = 3, 4, 5
COMPUTE_TYPE_BF16, COMPUTE_TYPE_TF32 = 6, 7


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
        dtype = np.asarray(function(np.zeros((1,) * builtins.max(a.ndim, 1), a.dtype), **kwargs)).dtype
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


# -- GEMM: cuBLAS, as CuPy calls it ---------------------------------------------------------
class _ComputeTypes:
    """``cupy._core.set_compute_type``'s state (``_routines_linalg.pyx`` lines 40-86)."""

    by_dtype: dict = {}


def set_compute_type(dtype, compute_type):
    if compute_type not in range(8):
        raise ValueError(f'Unknown compute type: {compute_type}')
    _ComputeTypes.by_dtype[np.dtype(dtype)] = compute_type


def get_compute_type(dtype):
    """``_routines_linalg.pyx`` lines 448-457: unset means DEFAULT, or TF32 for float32
    when ``CUPY_TF32=1``."""
    import os
    dtype = np.dtype(dtype)
    if _ComputeTypes.by_dtype.get(dtype, COMPUTE_TYPE_TBD) == COMPUTE_TYPE_TBD:
        tf32 = dtype == np.float32 and os.environ.get('CUPY_TF32', '0') != '0'
        _ComputeTypes.by_dtype[dtype] = COMPUTE_TYPE_TF32 if tf32 else COMPUTE_TYPE_DEFAULT
    return _ComputeTypes.by_dtype[dtype]


def _tf32(values: np.ndarray) -> np.ndarray:
    """float32 rounded to TF32's 10-bit mantissa (what the tensor cores multiply)."""
    bits = np.ascontiguousarray(values).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def _cublas_refused(a, b, n, m) -> None:
    """CuPy 14.2 refuses cuBLAS on a capturing stream, for every GEMM that reaches cuBLAS.

    ``cupy.matmul`` (``cupy/linalg/_product.py`` line 50, a _GUFunc over ``_core.matmul``)
    -> ``_core.matmul`` (``cupy/_core/_routines_linalg.pyx`` line 821; ``dot`` for ndim <= 2,
    line 857) -> ``dot`` (line 475) -> ``tensordot_core`` (line 541) -> for compute capability
    >= 50 ``tensordot_core_v11`` (line 702) -> ``cublas.gemmEx`` (line 775) ->
    ``cupy_backends/cuda/libs/cublas.pyx`` ``gemmEx`` (line 1639) calls ``_setStream``
    (line 666) -> ``setStream`` (line 642), which raises NotImplementedError when the
    current stream is capturing. Every other cuBLAS wrapper in cublas.pyx (sgemmEx line 1493,
    dgemm 1089, the batched ones used by matmul's ndim > 2 path) calls ``_setStream``
    first too. The GEMMs that reach no cuBLAS at all: integer dtypes (a CuPy kernel,
    ``_routines_linalg.pyx`` line 621), an empty operand (``out.fill(0)``, line 560) and
    a 1 x 1 output (a reduction kernel, line 566).
    """
    if a.dtype.kind in 'biu' or not a.size or not b.size or (n == 1 and m == 1):
        return
    if _streams.get_current_stream().is_capturing():
        raise NotImplementedError('calling cuBLAS API during stream capture is currently '
                                  'unsupported')


def _gemm(numpy_function, a, b, out):
    if not (isinstance(a, ndarray) and isinstance(b, ndarray)):
        raise TypeError(f'Unsupported type {type(b if isinstance(a, ndarray) else a)}')
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("Scalar operands are not allowed, use '*' instead")
    probe = numpy_function(np.zeros(a.shape[-2:] if a.ndim > 1 else a.shape, a.dtype),
                           np.zeros(b.shape[-2:] if b.ndim > 1 else b.shape, b.dtype))
    shape = numpy_function(np.lib.stride_tricks.as_strided(np.zeros(1, np.bool_), a.shape,
                                                           (0,) * a.ndim),
                           np.lib.stride_tricks.as_strided(np.zeros(1, np.bool_), b.shape,
                                                           (0,) * b.ndim)).shape \
        if a.ndim > 2 or b.ndim > 2 else probe.shape
    if out is not None and out.dtype != probe.dtype:
        raise ValueError('Not supported dtype combination.')
    _cublas_refused(a, b, int(np.prod(shape[:-1])) if shape else 1, shape[-1] if shape else 1)
    left, right = a._a, b._a
    tf32 = a.dtype == np.float32 and get_compute_type(np.float32) == COMPUTE_TYPE_TF32

    def fill(target):
        x, y = (_tf32(left), _tf32(right)) if tf32 else (left, right)
        if target.flags.c_contiguous:
            numpy_function(x, y, out=target)
        else:
            target[...] = numpy_function(x, y)
    if out is None:
        return new_result(shape, probe.dtype, fill)
    if out.shape != shape:
        raise ValueError(f'Output array has an invalid shape {out.shape}, expected {shape}')
    target = out._a
    _streams.issue(lambda: fill(target))
    return out


def matmul(x1, x2, /, out=None, **kwargs):
    if kwargs:
        raise TypeError(f"the CuPy stand-in's matmul takes out=; got {sorted(kwargs)}")
    return _gemm(np.matmul, x1, x2, out)


def dot(a, b, out=None):
    return _gemm(np.dot, a, b, out)
