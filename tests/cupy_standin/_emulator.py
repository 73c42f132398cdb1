"""Compiled kernel modules for ``RawModule``: the CPU emulator's ``compile_module``
(``tests/cuda_emulator``: the real ``kernels/*.cu`` through g++ and its CUDA runtime shim),
one build per (code, options, name expressions) per process."""
from __future__ import annotations

_modules: dict = {}


def compile_cached(code: str, options: tuple, names: tuple):
    """The emulator's module for this source (built once per process)."""
    key = (code, options, names)
    if key not in _modules:
        from cuda_emulator import compile_module

        _modules[key] = compile_module(code, options, names)
    return _modules[key]
