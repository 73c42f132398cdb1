"""Compiles a kernel source's instantiations with g++ against ``cuda_shim.h`` into a shared
library and runs launches on NumPy arrays: the launchers' own ``(name, grid, block, args)``
tuples, passed the way cuLaunchKernel takes them (a pointer to each argument's value)."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from gpunet.ops.kernels import kernel_dir

HERE = Path(__file__).resolve().parent
FLAGS = ("-std=c++20", "-O2", "-shared", "-fPIC", "-pthread", "-Wall", "-Wno-unknown-pragmas")


def compiler() -> str | None:
    """The g++ on PATH, or None."""
    return shutil.which("g++")


def _driver(source) -> str:
    """C++ that includes the source and wraps each kernel as ``extern "C" kernel_I``."""
    lines = [f'#include "{kernel_dir() / f"{source.name}.cu"}"']
    for i, expression in enumerate(source.kernels):
        lines.append(f'extern "C" void kernel_{i}(const unsigned* dims, void** params) '
                     f'{{ emu::launch_params(&{expression}, dims, params); }}')
    return "\n".join(lines) + "\n"


class Emulator:
    """One compiled source: :meth:`run` executes launches by kernel name."""

    def __init__(self, source, folder: Path):
        driver = folder / f"{source.name}_driver.cpp"
        library = folder / f"{source.name}_emulated.so"
        driver.write_text(_driver(source))
        defines = [f"-D{key}={value}" for key, value in source.defines]
        done = subprocess.run([compiler(), *FLAGS, *defines, "-I", str(HERE), "-include",
                               "cuda_shim.h", str(driver), "-o", str(library)],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or "warning" in done.stderr:
            raise AssertionError(f"g++ failed on {source.name}.cu:\n{done.stderr[-4000:]}")
        self._lib = ctypes.CDLL(str(library))
        self._index = {expression: i for i, expression in enumerate(source.kernels)}

    def launch(self, kernel: str, grid, block, args) -> None:
        """One launch: arrays pass their data pointers, int32 scalars their values."""
        assert all(isinstance(a, (np.ndarray, np.int32)) for a in args), args
        values = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray)
                  else ctypes.c_int32(int(a)) for a in args]
        params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
        dims = (ctypes.c_uint * 6)(*grid, *block)
        getattr(self._lib, f"kernel_{self._index[kernel]}")(dims, params)

    def run(self, launches) -> None:
        """Launches in order, as a stream would run them."""
        for kernel, grid, block, args in launches:
            self.launch(kernel, grid, block, args)
