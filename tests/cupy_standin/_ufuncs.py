"""CuPy's ufuncs (``cupy.add``, ``cupy.exp``, ...): NumPy's, run through the stream.

Operands are device arrays and host scalars (Python or NumPy); a host ``numpy.ndarray`` is
refused with CuPy's TypeError (no implicit host-to-device copy). With ``out=`` the result is
written into it (recorded inside a capture); without, a new array is allocated (refused
inside a capture). Type promotion is NumPy 2's (NEP 50), which CuPy 14 follows.
"""
from __future__ import annotations

import numpy as np

from . import _streams
from ._ndarray import ndarray

SCALARS = (bool, int, float, complex, np.generic)


def operand(x):
    """A ufunc operand: a device array's NumPy view, or a host scalar."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, SCALARS):
        return x
    raise TypeError(f'Unsupported type {type(x)}')


def probe(x):
    """What stands for operand ``x`` when working out a result's dtype (no work done)."""
    return np.zeros((), x.dtype) if isinstance(x, ndarray) else x


def broadcast_shape(args) -> tuple:
    return np.broadcast_shapes(*[x.shape for x in args if isinstance(x, ndarray)])


class ufunc:
    """One CuPy ufunc: ``f(*inputs, out=None, dtype=None, casting='same_kind')``."""

    def __init__(self, numpy_ufunc):
        self._np = numpy_ufunc
        self.__name__ = numpy_ufunc.__name__
        self.nin, self.nout, self.nargs = numpy_ufunc.nin, numpy_ufunc.nout, numpy_ufunc.nargs

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"

    def __call__(self, *args, out=None, dtype=None, casting='same_kind', **kwargs):
        if kwargs:
            raise TypeError(f"the CuPy stand-in's {self.__name__} takes out, dtype and "
                            f"casting; got {sorted(kwargs)}")
        if len(args) > self.nin:
            if out is not None or len(args) != self.nin + 1:
                raise ValueError(f'{self.__name__} takes {self.nin} inputs and one out')
            args, out = args[:self.nin], args[self.nin]
        if len(args) != self.nin:
            raise TypeError(f'Wrong number of arguments for {self.__name__!r}. It must be '
                            f'either {self.nin} or {self.nargs} (with outputs), but given '
                            f'{len(args)}.')
        if isinstance(out, tuple):
            (out,) = out
        inputs = [operand(x) for x in args]
        shape = broadcast_shape(args)
        with np.errstate(all='ignore'):
            result_dtype = np.asarray(self._np(*[probe(x) for x in args], dtype=dtype)).dtype
        if out is None:
            from ._creation import new_result
            return new_result(shape, result_dtype,
                              lambda target: self._run(inputs, target, dtype, casting))
        if not isinstance(out, ndarray):
            raise TypeError(f'Output arguments must be cupy arrays, got {type(out)}')
        if np.broadcast_shapes(shape, out.shape) != out.shape:
            raise ValueError(f'Out shape is mismatched: {out.shape} for inputs of {shape}')
        with np.errstate(all='ignore'):  # validates the cast now
            self._np(*[probe(x) for x in args], out=np.empty((), out.dtype), dtype=dtype,
                     casting=casting)
        target = out._a
        _streams.issue(lambda: self._run(inputs, target, dtype, casting))
        return out

    def _run(self, inputs, target, dtype, casting):
        with np.errstate(all='ignore'):  # the device computes IEEE results silently
            self._np(*inputs, out=target, dtype=dtype, casting=casting)


NAMES = ("add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "power",
         "float_power", "remainder", "mod", "fmod", "maximum", "minimum", "fmax", "fmin",
         "negative", "positive", "absolute", "fabs", "sign", "reciprocal", "square", "sqrt",
         "cbrt", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos", "tan",
         "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh", "tanh", "arcsinh",
         "arccosh", "arctanh", "floor", "ceil", "trunc", "rint", "copysign", "hypot",
         "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
         "logical_and", "logical_or", "logical_xor", "logical_not", "bitwise_and",
         "bitwise_or", "bitwise_xor", "invert", "left_shift", "right_shift", "isfinite",
         "isinf", "isnan", "signbit")

for _name in NAMES:
    globals()[_name] = ufunc(getattr(np, _name))
__all__ = list(NAMES) + ["abs", "bitwise_not", "ufunc"]
abs = absolute  # noqa: A001,F821  (cupy.abs is cupy.absolute)
bitwise_not = invert  # noqa: F821
