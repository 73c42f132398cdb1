"""Compiled kernel modules for ``RawModule``: the CPU emulator's ``compile_module`` (the real
``kernels/*.cu`` through g++ and its CUDA shim), one build per (code, options, names).

Until ``cuda_emulator.compile_module`` exists, :class:`_ShimBridge` builds the module with the
emulator's current shim header (``tests/cuda_emulator/cuda_shim.h``): enough for kernels
without warp shuffles or atomics; it checks no scalar widths (the emulator's job).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

EMULATOR_DIR = Path(__file__).resolve().parent.parent / "cuda_emulator"
_modules: dict = {}


def compile_cached(code: str, options: tuple, names: tuple):
    """The emulator's module for this source (built once per process)."""
    key = (code, options, names)
    if key not in _modules:
        try:
            from cuda_emulator import compile_module
        except ImportError:
            _modules[key] = _ShimBridge(code, options, names)
        else:
            _modules[key] = compile_module(code, options, names)
    return _modules[key]


_SCALARS = {np.dtype(np.int8): ctypes.c_int8, np.dtype(np.uint8): ctypes.c_uint8,
            np.dtype(np.int16): ctypes.c_int16, np.dtype(np.uint16): ctypes.c_uint16,
            np.dtype(np.int32): ctypes.c_int32, np.dtype(np.uint32): ctypes.c_uint32,
            np.dtype(np.int64): ctypes.c_int64, np.dtype(np.uint64): ctypes.c_uint64,
            np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double,
            np.dtype(np.bool_): ctypes.c_bool}


def _ctype(value):
    if value is None:
        return ctypes.c_void_p(0)
    if hasattr(value, "data") and hasattr(value.data, "ptr"):
        return ctypes.c_void_p(value.data.ptr)
    if hasattr(value, "ptr"):
        return ctypes.c_void_p(value.ptr)
    if isinstance(value, bool):
        return ctypes.c_bool(value)
    if isinstance(value, int):
        return ctypes.c_longlong(value)
    if isinstance(value, float):
        return ctypes.c_double(value)
    return _SCALARS[np.dtype(type(value))](value)


class _ShimBridge:
    """A module built against the shim header of ``tests/cuda_emulator`` (see the module)."""

    def __init__(self, code: str, options: tuple, names: tuple):
        defines = [o for o in options if o.startswith("-D")]
        shim = (EMULATOR_DIR / "cuda_shim.h").read_text()
        digest = hashlib.sha256("\0".join((code, *defines, *names, shim)).encode()).hexdigest()
        folder = Path(tempfile.gettempdir()) / f"gpunet-standin-{os.getuid()}"
        folder.mkdir(exist_ok=True)
        library = folder / f"{digest[:24]}.so"
        if not library.exists():
            source = folder / f"{digest[:24]}.cu"
            source.write_text(code)
            driver = folder / f"{digest[:24]}_driver.cpp"
            lines = [f'#include "{source}"'] + [
                f'extern "C" void kernel_{i}(const unsigned* dims, void** params) '
                f'{{ emu::launch_params(&{name}, dims, params); }}' for i, name in enumerate(names)]
            driver.write_text("\n".join(lines) + "\n")
            partial = library.with_suffix(f".{os.getpid()}.tmp")
            done = subprocess.run(["g++", "-std=c++20", "-O2", "-shared", "-fPIC", "-pthread",
                                   *defines, "-I", str(EMULATOR_DIR), "-include", "cmath",
                                   "-include", "cuda_shim.h", str(driver), "-o", str(partial)],
                                  capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"the CPU emulator's shim cannot build this module yet "
                                   f"(g++ failed):\n{done.stderr[-3000:]}")
            partial.replace(library)
        self._lib = ctypes.CDLL(str(library))
        self._index = {name: i for i, name in enumerate(names)}

    def launch(self, name, grid, block, args, shared_mem=0):
        values = [_ctype(a) for a in args]
        params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        dims = (ctypes.c_uint * 6)(*grid, *block)
        getattr(self._lib, f"kernel_{self._index[name]}")(dims, params)
