"""CuPy's GEMMs (``matmul``, ``dot``) and cuBLAS's compute-type switch, as CuPy 14.2 calls
cuBLAS: refused on a capturing stream (see :func:`_cublas_refused`)."""
from __future__ import annotations

import os

import numpy as np

from . import _streams
from ._creation import new_result
from ._ndarray import ndarray

COMPUTE_TYPE_TBD, COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_PEDANTIC = 0, 1, 2
COMPUTE_TYPE_FP16, COMPUTE_TYPE_FP32, COMPUTE_TYPE_FP64 = 3, 4, 5
COMPUTE_TYPE_BF16, COMPUTE_TYPE_TF32 = 6, 7


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
