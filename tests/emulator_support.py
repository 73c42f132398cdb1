"""Helpers for the emulator's tests: test kernels from ``tests/emulator_kernels/``, and
gpunet's own launchers (``gpunet/ops/launchers/``) running on the emulator with NumPy arrays.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cuda_emulator import compile_module, compiler
from gpunet.ops import kernels

KERNELS = Path(__file__).resolve().parent / "emulator_kernels"


def require_compiler() -> None:
    """Skip the calling test module where g++ is missing."""
    if compiler() is None:
        pytest.skip("g++ is not installed: the CUDA emulator cannot build kernels",
                    allow_module_level=True)


def load_test_kernels(file: str, *names: str, options=(), flavour=None, edit=None):
    """``tests/emulator_kernels/<file>`` built with kernels ``names`` (``edit`` may change its
    text first)."""
    code = (KERNELS / file).read_text()
    return compile_module(edit(code) if edit else code, ("--std=c++17", *options), names,
                          flavour=flavour, path=None if edit else KERNELS / file)


def real_module(source, edit=None, flavour=None):
    """A ``kernels/*.cu`` source (a launcher's KernelSource) built with its launcher's
    options and kernels; ``edit(text)`` may break it on purpose first."""
    code = source.read()
    return compile_module(edit(code) if edit else code, source.options, source.kernels,
                          flavour=flavour)


def replace_once(old: str, new: str, kernel: str | None = None):
    """An ``edit`` replacing the one occurrence of ``old`` (which must be there), in the body
    of ``__global__`` function ``kernel`` if given."""
    def edit(code: str) -> str:
        begin, end = 0, len(code)
        if kernel:
            begin = code.index(f"__global__ void {kernel}(")
            end = code.index("\n}\n", begin)
        part = code[begin:end]
        assert part.count(old) == 1, f"expected {old!r} once in {kernel or 'the source'}"
        return code[:begin] + part.replace(old, new) + code[end:]
    return edit


class DeviceArray(np.ndarray):
    """A NumPy array that answers ``.data.ptr`` as a CuPy array does (launchers ask for it
    to decide on float4 loads)."""

    @property
    def data(self):
        return SimpleNamespace(ptr=self.__array_interface__["data"][0])


def device(array) -> DeviceArray:
    return np.asarray(array).view(DeviceArray)


@contextlib.contextmanager
def emulated_launchers(edits=None, flavour=None):
    """Within it, ``KernelSource.function`` launches on the emulator: gpunet's launchers
    run unmodified on NumPy (DeviceArray) arguments. ``edits`` maps a source name to an edit
    of its text (a kernel broken on purpose)."""
    edits = edits or {}

    @functools.lru_cache(maxsize=None)  # as kernels._function: one kernel object per name
    def function(source, expression):
        module = real_module(source, edits.get(source.name), flavour)
        return lambda grid, block, args, shared_mem=0: module.launch(
            expression, grid, block, args, shared_mem)

    original = kernels._function
    kernels._function = function
    try:
        yield
    finally:
        kernels._function = original
