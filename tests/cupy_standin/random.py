"""``cupy.random``: a seeded ``RandomState`` on the device (NumPy's generator, so the numbers
differ from cuRAND's; the interface and the device arrays are CuPy's). cuRAND refuses a
capturing stream (``cupy_backends/cuda/libs/curand.pyx`` ``setStream``, lines 139-146)."""
from __future__ import annotations

import numpy as np

from . import _streams
from ._creation import new_result


class RandomState:
    """``cupy.random.RandomState(seed=None, method=None)``."""

    def __init__(self, seed=None, method=None):
        self._rs = np.random.RandomState(seed)

    def seed(self, seed=None):
        self._rs = np.random.RandomState(seed)

    def _generate(self, shape, dtype, draw):
        """A new array (allocated first, as CuPy does) filled by cuRAND ``draw``."""
        out = new_result(shape, dtype, lambda target: None)
        if _streams.get_current_stream().is_capturing():
            raise NotImplementedError('calling cuRAND API during stream capture is currently '
                                      'unsupported')
        out._a[...] = draw()
        return out

    @staticmethod
    def _shape(size):
        return () if size is None else (size,) if isinstance(size, int) else tuple(size)

    def random_sample(self, size=None, dtype=float):
        return self._generate(self._shape(size), dtype, lambda: self._rs.random_sample(size))

    def rand(self, *size, dtype=float):
        return self.random_sample(size, dtype)

    def standard_normal(self, size=None, dtype=float):
        return self._generate(self._shape(size), dtype, lambda: self._rs.standard_normal(size))

    def randn(self, *size, dtype=float):
        return self.standard_normal(size, dtype)

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return self._generate(self._shape(size), dtype,
                              lambda: self._rs.normal(loc, scale, size))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return self._generate(self._shape(size), dtype,
                              lambda: self._rs.uniform(low, high, size))

    def randint(self, low, high=None, size=None, dtype=int):
        return self._generate(self._shape(size), dtype,
                              lambda: self._rs.randint(low, high, size))

    def permutation(self, a):
        """A permuted ``range(a)`` (int64, as CuPy's argsort of random keys gives), or a
        permuted copy of array ``a`` along its first axis."""
        if isinstance(a, int):
            return self._generate((a,), np.int64, lambda: self._rs.permutation(a))
        return a[self.permutation(len(a))]

    def shuffle(self, a):
        a[:] = a[self.permutation(len(a))]


_default = RandomState()


def get_random_state():
    return _default


def seed(seed=None):
    _default.seed(seed)


def random_sample(size=None, dtype=float):
    return _default.random_sample(size, dtype)


def rand(*size, dtype=float):
    return _default.rand(*size, dtype=dtype)


def randn(*size, dtype=float):
    return _default.randn(*size, dtype=dtype)


def standard_normal(size=None, dtype=float):
    return _default.standard_normal(size, dtype)


def normal(loc=0.0, scale=1.0, size=None, dtype=float):
    return _default.normal(loc, scale, size, dtype)


def uniform(low=0.0, high=1.0, size=None, dtype=float):
    return _default.uniform(low, high, size, dtype)


def randint(low, high=None, size=None, dtype=int):
    return _default.randint(low, high, size, dtype)


def permutation(a):
    return _default.permutation(a)


def shuffle(a):
    _default.shuffle(a)


