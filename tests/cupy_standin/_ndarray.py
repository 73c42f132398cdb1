"""``cupy.ndarray``: a NumPy view onto stand-in device memory, behind CuPy's interface.

Reading or writing the contents goes through the stream (``_streams.issue``), so inside a
capture it is recorded, not done. Everything that brings values to the host (``get``,
``float``, ``int``, ``bool``, ``item``, ``tolist``, ``repr``) is a device-to-host transfer
that CuPy refuses on a capturing stream (``cupy/_core/core.pyx`` ``get`` lines 2098-2208:
``copy_to_host_async`` then ``stream.synchronize``). ``numpy.asarray(a)`` raises TypeError as
CuPy's ``__array__`` does (line 1803). CuPy's reference lines are of v14.2.0.
"""
from __future__ import annotations

import numpy as np

from . import _memory, _streams


class Flags:
    """``ndarray.flags``: ``c_contiguous``, ``f_contiguous``, ``owndata`` (and by key)."""

    def __init__(self, c_contiguous, f_contiguous, owndata):
        self.c_contiguous, self.f_contiguous, self.owndata = c_contiguous, f_contiguous, owndata

    def __getitem__(self, name):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[name]

    def __repr__(self):
        return (f"  C_CONTIGUOUS : {self.c_contiguous}\n  F_CONTIGUOUS : {self.f_contiguous}"
                f"\n  OWNDATA : {self.owndata}")


def is_basic_index(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer))
               and not isinstance(k, (bool, np.bool_)) for k in keys)


def host_index(key):
    """An index with device arrays replaced by their NumPy views (read when used) and host
    arrays refused where CuPy would need a transfer inside a capture."""
    if isinstance(key, tuple):
        return tuple(host_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, (np.ndarray, list)):
        _memory.check_transfer("H2D transfers")
        return np.asarray(key)
    return key


class ndarray:
    """A device array (``cupy.ndarray(shape, dtype=float, memptr=None, strides=None,
    order='C')``)."""

    __slots__ = ("_a", "_mem", "_base", "__weakref__")

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order='C'):
        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if memptr is None:
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            mem, offset = _memory.allocate(size), 0
        else:
            mem, offset = memptr.mem, memptr.offset
        self._mem, self._base = mem, None
        self._a = np.ndarray(shape, dtype, buffer=mem.buffer, offset=mem.start + offset,
                             strides=strides, order=order)

    @classmethod
    def _view(cls, a: np.ndarray, mem, base):
        self = cls.__new__(cls)
        self._a, self._mem, self._base = a, mem, base
        return self

    def _derived(self, a: np.ndarray):
        """An array viewing this one's memory through NumPy view ``a``."""
        return ndarray._view(a, self._mem, self._base if self._base is not None else self)

    # -- attributes ----------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    base = property(lambda self: self._base)
    T = property(lambda self: self.transpose())

    @shape.setter
    def shape(self, value):
        self._a = self.reshape(value)._a

    @property
    def flags(self) -> Flags:
        return Flags(self._a.flags.c_contiguous, self._a.flags.f_contiguous,
                     self._base is None)

    @property
    def data(self) -> _memory.MemoryPointer:
        if self._a.size == 0:
            return _memory.MemoryPointer(self._mem, 0)
        return _memory.MemoryPointer(self._mem, self._a.ctypes.data - self._mem.ptr)

    @property
    def device(self):
        from ._device import Device
        return Device(self._mem.device_id)

    # -- views ---------------------------------------------------------------------------
    def reshape(self, *shape, order='C'):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        zeros(self).reshape(shape, order=order)  # the shape's own errors
        try:
            return self._derived(np.reshape(self._a, shape, order=order, copy=False))
        except ValueError:  # not expressible as a view: a copy, as CuPy makes
            return self._copy_then(lambda a: a.reshape(shape, order=order))

    def ravel(self, order='C'):
        return self.reshape(-1, order=order)

    def flatten(self, order='C'):
        return self.copy(order=order).reshape(-1)

    def view(self, dtype=None, array_class=None):
        return self._derived(self._a.view() if dtype is None else self._a.view(dtype))

    def transpose(self, *axes):
        return self._derived(self._a.transpose(*axes))

    def swapaxes(self, axis1, axis2):
        return self._derived(self._a.swapaxes(axis1, axis2))

    def squeeze(self, axis=None):
        return self._derived(self._a.squeeze(axis))

    def diagonal(self, offset=0, axis1=0, axis2=1):
        return self._derived(self._a.diagonal(offset, axis1, axis2))

    def __getitem__(self, key):
        if is_basic_index(key):
            keys = key if isinstance(key, tuple) else (key,)
            if Ellipsis not in keys:
                keys = keys + (Ellipsis,)  # a 0-d view, never a host scalar
            return self._derived(self._a[keys])
        index = host_index(key)
        if isinstance(index, np.ndarray) and index.dtype == bool or isinstance(index, tuple) \
                and any(isinstance(k, np.ndarray) and k.dtype == bool for k in index):
            _memory.check_transfer("synchronous API calls")  # the mask's count, read on the host
        probe = zeros(self)[index]
        return _creation.new_result(probe.shape, self.dtype,
                                    lambda out: np.copyto(out, self._a[index]))

    def __setitem__(self, key, value):
        index = key if is_basic_index(key) else host_index(key)
        target = self._a
        if isinstance(value, ndarray):
            source = value._a
            _streams.issue(lambda: target.__setitem__(index, source))
            return
        if is_basic_index(key):
            value = np.asarray(value, dtype=self.dtype)
            if value.shape != ():  # CuPy fills from a host scalar only (gh-2079)
                raise ValueError('non-scalar numpy.ndarray cannot be used for fill')
            _streams.issue(lambda: target.__setitem__(index, value))
            return
        source = _creation.to_device_operand(value, self.dtype)
        _streams.issue(lambda: target.__setitem__(index, source))

    def __len__(self):
        if self.ndim == 0:
            raise TypeError('len() of unsized object')
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError('iteration over a 0-d array')
        return (self[i] for i in range(self.shape[0]))

    # -- copies and host transfers ---------------------------------------------------------
    def _copy_then(self, reshape):
        shape = reshape(zeros(self)).shape
        return _creation.new_result(shape, self.dtype,
                                    lambda out: np.copyto(out, reshape(self._a)))

    def _layout(self, order) -> str:
        """The memory order of a copy: 'F' for F, or for A/K of a Fortran-only array."""
        fortran = self._a.flags.f_contiguous and not self._a.flags.c_contiguous
        return 'F' if order == 'F' or order in 'AK' and fortran else 'C'

    def copy(self, order='C'):
        return _creation.new_result(self.shape, self.dtype, lambda out: np.copyto(out, self._a),
                                    order=self._layout(order))

    def astype(self, dtype, order='K', casting=None, subok=None, copy=True):
        dtype = np.dtype(dtype)
        if not copy and dtype == self.dtype:
            return self
        np.empty(0, self.dtype).astype(dtype, casting=casting or 'unsafe')  # validates
        return _creation.new_result(
            self.shape, dtype, lambda out: np.copyto(out, self._a, casting='unsafe'),
            order=self._layout(order))

    def fill(self, value):
        if isinstance(value, ndarray):
            if value.shape != ():
                raise ValueError('non-scalar cupy.ndarray cannot be used for fill')
            source, target = value._a, self._a
            _streams.issue(lambda: target.__setitem__(Ellipsis, source))
            return
        value = np.asarray(value, dtype=self.dtype)
        if value.shape != ():
            raise ValueError('non-scalar numpy.ndarray cannot be used for fill')
        target = self._a
        _streams.issue(lambda: target.fill(value[()]))

    def get(self, stream=None, order='C', out=None, blocking=True):
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError('Only numpy.ndarray can be obtained fromcupy.ndarray')
            if out.dtype != self.dtype:
                raise TypeError(f'{out.dtype} array cannot be obtained from {self.dtype} '
                                f'array')
            if out.shape != self.shape:
                raise ValueError(f'Shape mismatch. Expected shape: {self.shape}, actual '
                                 f'shape: {out.shape}')
        elif self.size == 0:
            return np.ndarray(self.shape, dtype=self.dtype)
        _memory.check_transfer("D2H transfers", stream)
        if out is None:
            return np.array(self._a, order=order if order in 'CF' else 'K', copy=True)
        out[...] = self._a
        return out

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError('Only numpy.ndarray can be set to cupy.ndarray')
        if self.dtype != arr.dtype:
            raise TypeError(f'{arr.dtype} array cannot be set to {self.dtype} array')
        if self.shape != arr.shape:
            raise ValueError(f'Shape mismatch. Old shape: {self.shape}, new shape: '
                             f'{arr.shape}')
        _memory.check_transfer("H2D transfers", stream)
        self._a[...] = arr

    def item(self):
        if self.size != 1:
            raise ValueError('can only convert an array of size 1 to a Python scalar')
        return self.get().item()

    def tolist(self):
        return self.get().tolist()

    def tobytes(self, order='C'):
        return self.get().tobytes(order)

    def __array__(self, dtype=None, copy=None):
        raise TypeError('Implicit conversion to a NumPy array is not allowed. Please use '
                        '`.get()` to construct a NumPy array explicitly.')

    def __int__(self):
        return int(self.get())

    def __float__(self):
        return float(self.get())

    def __complex__(self):
        return complex(self.get())

    def __bool__(self):
        if self.size == 0:
            return False
        if self.size == 1:
            return bool(self.get())
        raise ValueError('The truth value of an array with more than one element is '
                         'ambiguous. Use a.any() or a.all()')

    def __repr__(self):
        return repr(self.get())

    def __str__(self):
        return str(self.get())

    def __format__(self, format_spec):
        return format(self.get(), format_spec)

    __hash__ = None

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):
        return _creation.array, (self.get(order="A"),)

    # -- NumPy interoperation (cupy/_core/core.pyx lines 1969-2046) --------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != '__call__' or not isinstance(getattr(_ufuncs, ufunc.__name__, None),
                                                  _ufuncs.ufunc):
            return NotImplemented
        if 'out' in kwargs:
            out = kwargs['out']
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs['out'] = out[0]
        return getattr(_ufuncs, ufunc.__name__)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        own = next((getattr(m, func.__name__) for m in (_routines, _creation, _gemm)
                    if hasattr(m, func.__name__)), None)
        if own is None or func.__module__ not in ('numpy', 'numpy.linalg') or \
                not all(issubclass(t, ndarray) for t in types):
            return NotImplemented
        return own(*args, **kwargs)

    # -- reductions and other methods --------------------------------------------------------
    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return _routines.sum(self, axis, dtype, out, keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return _routines.mean(self, axis, dtype, out, keepdims)

    def max(self, axis=None, out=None, keepdims=False):
        return _routines.amax(self, axis, out, keepdims)

    def min(self, axis=None, out=None, keepdims=False):
        return _routines.amin(self, axis, out, keepdims)

    def argmax(self, axis=None, out=None, dtype=None, keepdims=False):
        return _routines.argmax(self, axis, dtype, out, keepdims)

    def argmin(self, axis=None, out=None, dtype=None, keepdims=False):
        return _routines.argmin(self, axis, dtype, out, keepdims)

    def all(self, axis=None, out=None, keepdims=False):
        return _routines.all(self, axis, out, keepdims)

    def any(self, axis=None, out=None, keepdims=False):
        return _routines.any(self, axis, out, keepdims)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False):
        return _routines.prod(self, axis, dtype, out, keepdims)

    def cumsum(self, axis=None, dtype=None, out=None):
        return _routines.cumsum(self, axis, dtype, out)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return _routines.var(self, axis, dtype, out, ddof, keepdims)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return _routines.std(self, axis, dtype, out, ddof, keepdims)

    def clip(self, min=None, max=None, out=None):
        return _routines.clip(self, min, max, out)

    def nonzero(self):
        return _routines.nonzero(self)

    def dot(self, b, out=None):
        return _gemm.dot(self, b, out)

    def take(self, indices, axis=None, out=None):
        return _routines.take(self, indices, axis, out)

    def repeat(self, repeats, axis=None):
        return _routines.repeat(self, repeats, axis)


def zeros(a) -> np.ndarray:
    """A read-only host array of ``a``'s shape and dtype holding one zero (strides 0): the
    shape and dtype of a result, at no cost."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, a.dtype), a.shape, (0,) * a.ndim,
                                           writeable=False)


def _binary(name, reflected=False, inplace=False):
    def method(self, other):
        function = getattr(_gemm if name == "matmul" else _ufuncs, name)
        if inplace:
            return function(self, other, out=self)
        if reflected:
            return function(other, self)
        return function(self, other)
    return method


def _unary(name):
    def method(self):
        return getattr(_ufuncs, name)(self)
    return method


for _dunder, _ufunc in [("add", "add"), ("sub", "subtract"), ("mul", "multiply"),
                        ("truediv", "true_divide"), ("floordiv", "floor_divide"),
                        ("mod", "remainder"), ("pow", "power"), ("and", "bitwise_and"),
                        ("or", "bitwise_or"), ("xor", "bitwise_xor"), ("lshift", "left_shift"),
                        ("rshift", "right_shift"), ("matmul", "matmul")]:
    setattr(ndarray, f"__{_dunder}__", _binary(_ufunc))
    setattr(ndarray, f"__r{_dunder}__", _binary(_ufunc, reflected=True))
    if _dunder != "matmul":
        setattr(ndarray, f"__i{_dunder}__", _binary(_ufunc, inplace=True))
for _dunder, _ufunc in [("eq", "equal"), ("ne", "not_equal"), ("lt", "less"),
                        ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal")]:
    setattr(ndarray, f"__{_dunder}__", _binary(_ufunc))
for _dunder, _ufunc in [("neg", "negative"), ("pos", "positive"), ("abs", "absolute"),
                        ("invert", "invert")]:
    setattr(ndarray, f"__{_dunder}__", _unary(_ufunc))
ndarray.__module__ = "cupy"

from . import _creation, _gemm, _routines, _ufuncs  # noqa: E402  (they build on ndarray)
