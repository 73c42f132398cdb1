"""A CuPy stand-in for tests: NumPy on the CPU behind CuPy 14.2's interface, loaded as the
module ``cupy`` inside a test process only (``tests/cupy_standin/install.py``; never
installed for users). What it emulates and where CuPy's source says so: ``_streams.py``
(capture, graphs, events), ``_memory.py`` (allocation, host transfers), ``_routines.py``
(cuBLAS under capture), ``_kernels.py`` (RawModule through the CPU emulator),
``cuda/nccl.py`` (NCCL over MPI). A name gpunet calls that the stand-in lacks raises
AttributeError naming it; nothing passes through to NumPy unseen.
"""
from __future__ import annotations

import numpy as _np

from . import _errors
from ._kernels import RawKernel, RawModule  # noqa: F401
from ._memory import OutOfMemoryError, pinned_pool as _pinned_pool, pool as _pool  # noqa: F401
from ._ndarray import ndarray  # noqa: F401
from ._creation import (arange, array, asarray, ascontiguousarray, asnumpy,  # noqa: F401
                        empty, empty_like, eye, full, full_like, get_array_module, linspace,
                        ones, ones_like, zeros, zeros_like)
from ._gemm import dot, matmul  # noqa: F401
from ._routines import (all, allclose, amax, amin, any, argmax, argmin,  # noqa: F401
                        argsort, array_equal, broadcast_to, clip, concatenate, copyto,
                        count_nonzero, cumsum, expand_dims, flatnonzero, isclose, max,
                        may_share_memory, mean, min, nonzero, prod, ravel, repeat, reshape,
                        shares_memory, sort, squeeze, stack, std, sum, take, transpose, var,
                        where)
from ._ufuncs import *  # noqa: F401,F403
from ._ufuncs import abs, bitwise_not, ufunc  # noqa: F401
from . import cuda, random, _core  # noqa: F401

__version__ = "14.2.0"
STANDIN = True  # tests ask this to tell the stand-in from a real CuPy

dtype, finfo, iinfo, isscalar, ndim = _np.dtype, _np.finfo, _np.iinfo, _np.isscalar, _np.ndim
bool_, intp, uintp = _np.bool_, _np.intp, _np.uintp
int8, int16, int32, int64 = _np.int8, _np.int16, _np.int32, _np.int64
uint8, uint16, uint32, uint64 = _np.uint8, _np.uint16, _np.uint32, _np.uint64
float16, float32, float64 = _np.float16, _np.float32, _np.float64
complex64, complex128 = _np.complex64, _np.complex128
byte, ubyte, short, ushort, intc, uintc = _np.byte, _np.ubyte, _np.short, _np.ushort, \
    _np.intc, _np.uintc
half, single, double = _np.half, _np.single, _np.double
nan, inf, pi, e, newaxis = _np.nan, _np.inf, _np.pi, _np.e, _np.newaxis


def get_default_memory_pool():
    return _pool


def get_default_pinned_memory_pool():
    return _pinned_pool


def is_available() -> bool:
    return cuda.is_available()


def __getattr__(name):
    raise _errors.missing("cupy", name)
