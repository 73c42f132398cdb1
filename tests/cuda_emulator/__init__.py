"""Runs the real ``kernels/*.cu`` on the CPU: g++ compiles a source against a CUDA shim
(``runtime/``), each CUDA thread a fiber, blocks scheduled sequentially, shuffled or
concurrently, arguments checked against the kernels' C++ signatures. See the README's
"The CUDA emulator" and ``build.py``, ``module.py``, ``runtime/scheduler.h``."""
from __future__ import annotations

from pathlib import Path

from .build import CompileError, Flavour, build, compiler
from .module import EmulatorError, Module, Param
from .schedule import Schedule, get_schedule, scheduled, set_schedule

_loaded: dict = {}


def compile_module(code: str, options: tuple[str, ...] = (),
                   name_expressions: tuple[str, ...] = (), *,
                   flavour: Flavour | None = None, path: Path | None = None) -> Module:
    """The module for a source, as ``cupy.RawModule(code=, options=, name_expressions=)``
    receives it; built once per source, options, kernels and flavour (default: from the
    environment, see :class:`Flavour`), loaded once per process. ``path``: the file ``code``
    is the text of, named in g++, sanitizer and coverage reports (found by itself for
    ``kernels/*.cu``)."""
    if not name_expressions:
        raise ValueError("compile_module needs the kernels' name expressions")
    flavour = flavour or Flavour.from_environment()
    if flavour.sanitize:
        from .sanitizer import require_preloaded_asan

        require_preloaded_asan()
    library = build(code, tuple(options), tuple(name_expressions), flavour, path)
    if library not in _loaded:
        _loaded[library] = Module(library, tuple(name_expressions))
    return _loaded[library]


def loaded_modules() -> list[Module]:
    """Every module this process has loaded."""
    return list(_loaded.values())


__all__ = ["CompileError", "EmulatorError", "Flavour", "Module", "Param", "Schedule",
           "compile_module", "compiler", "get_schedule", "loaded_modules", "scheduled",
           "set_schedule"]
