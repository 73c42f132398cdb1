"""``cupy.cuda.nvrtc`` (CuPy 14.2 re-exports ``cupy_backends.cuda.libs.nvrtc`` there,
``cupy/cuda/__init__.py`` line 25): the stand-in compiles with g++, so the version is the
CUDA 13.0 it models (as ``runtime.runtimeGetVersion``)."""
from __future__ import annotations


def getVersion() -> tuple[int, int]:
    return (13, 0)
