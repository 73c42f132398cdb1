"""``cupy.RawModule`` and ``cupy.RawKernel``: the real CUDA C compiled by the CPU emulator
(``tests/cuda_emulator``) and launched on the stream (recorded inside a capture, with the
scalar arguments frozen at capture time and the arrays read at replay, as in a CUDA graph).

Arguments are passed as CuPy passes them (``cupy/cuda/function.pyx`` ``_pointer``, lines
53-82): a device array as its pointer, ``None`` as a null pointer, a host NumPy array only
when it has one element (by value), anything else as a scalar (a Python int as
``long long``, a float as ``double``); the emulator checks each width against the kernel's
parameter type.
"""
from __future__ import annotations

import numpy as np

from . import _emulator, _streams
from ._memory import MemoryPointer
from ._ndarray import ndarray


def _argument(x):
    if x is None or isinstance(x, ndarray):
        return x
    if isinstance(x, MemoryPointer):
        return x
    if isinstance(x, np.ndarray):
        if x.size == 1:
            return x.reshape(())[()]
        raise TypeError(f'You are trying to pass a numpy.ndarray of shape {x.shape} as a '
                        f'kernel parameter. Only numpy.ndarrays of size one can be passed by '
                        f'value. If you meant to pass a pointer to __global__ memory, you need '
                        f'to pass a cupy.ndarray instead.')
    if isinstance(x, (bool, int, float, complex, np.generic)):
        return x
    raise TypeError(f'Unsupported type {type(x)}')


def _dims(value, what):
    dims = tuple(value) if isinstance(value, tuple) else (value,)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) and d >= 0
                                          for d in dims):
        raise ValueError(f'{what} must be an int or a tuple of 1 to 3 non-negative ints, got '
                         f'{value!r}')
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


class RawKernel:
    """One kernel of a module: ``kernel(grid, block, args, *, shared_mem=0)``."""

    def __init__(self, module, name):
        self._module, self.name = module, name
        self.__name__ = name

    def __call__(self, grid, block, args, *, shared_mem=0):
        if not isinstance(args, tuple):
            raise TypeError(f'args must be a tuple, got {type(args).__name__}')
        grid, block = _dims(grid, 'grid'), _dims(block, 'block')
        values = tuple(_argument(a) for a in args)
        compiled = self._module._compiled()
        _streams.issue(lambda: compiled.launch(self.name, grid, block, values,
                                               shared_mem=shared_mem))

    def compile(self, log_stream=None):
        self._module._compiled()

    @property
    def kernel(self):
        return self._module._compiled()


class RawModule:
    """``cupy.RawModule(*, code=None, path=None, options=(), backend='nvrtc',
    translate_cucomplex=False, enable_cooperative_groups=False, name_expressions=None,
    jitify=None)``: compiled on first use, once per (code, options, names) per process."""

    def __init__(self, *, code=None, path=None, options=(), backend='nvrtc',
                 translate_cucomplex=False, enable_cooperative_groups=False,
                 name_expressions=None, jitify=None):
        if (code is None) == (path is None):
            raise TypeError('Exactly one of `code` and `path` keyword arguments must be '
                            'given.')
        if path is not None:
            raise TypeError("the CuPy stand-in compiles CUDA C source (code=), not a "
                            "cubin/ptx path")
        if not isinstance(options, tuple):
            raise TypeError(f"Argument 'options' has incorrect type (expected tuple, got "
                            f"{type(options).__name__})")
        self.code, self.options = code, options
        self.name_expressions = None if name_expressions is None else tuple(name_expressions)

    def _compiled(self):
        return _emulator.compile_cached(self.code, self.options, self.name_expressions or ())

    def compile(self, log_stream=None):
        self._compiled()

    def get_function(self, name):
        if self.name_expressions is not None and name not in self.name_expressions:
            raise RuntimeError(f'the kernel {name!r} is not among the name expressions of '
                               f'this module: {self.name_expressions}')
        return RawKernel(self, name)
