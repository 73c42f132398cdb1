"""The switch of the CuPy stand-in (``tests/cupy_standin``): load it as ``cupy`` in this
process, make it gpunet's GPU, and take it away again.

``installed()`` puts the stand-in's modules at ``sys.modules["cupy"]`` and ``"cupy.*"``
(the entries they replace, a real CuPy's ``cupy*`` and ``cupyx*`` or none, are kept aside),
turns its device on and resets what gpunet cached about the GPU: every ``functools.lru_cache`` of a loaded ``gpunet``
module (the GPU probe, the backends, the compiled kernels, the SM count) and the module
``gpunet.ops.cupy_ops``, which binds ``cupy`` when first imported (one copy bound to the
stand-in is kept and swapped in and out); leaving the block undoes all of it. Nothing here
is installed for users; gpunet itself knows nothing of it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent / "cupy_standin"
OPS_MODULE = "gpunet.ops.cupy_ops"


class _Slots:
    standin: dict | None = None  # the stand-in's cupy* modules, once loaded
    replaced: dict | None = None  # what they replaced while active
    standin_ops = None  # gpunet.ops.cupy_ops bound to the stand-in
    other_ops = None    # gpunet.ops.cupy_ops bound to something else, while active


_slots = _Slots()


def _is_cupy(name: str) -> bool:
    """A module of CuPy's namespace: the stand-in's, or a real CuPy's (``cupyx`` too: a real
    one, even lazily loaded, would import the real ``cupy._core`` from the stand-in)."""
    return name.split(".")[0] in ("cupy", "cupyx")


def _load():
    spec = importlib.util.spec_from_file_location(
        "cupy", PACKAGE / "__init__.py", submodule_search_locations=[str(PACKAGE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["cupy"] = module
    spec.loader.exec_module(module)
    import cupy.cuda.nccl  # noqa: F401  (loaded now, so it is swapped with the rest)


def unusable() -> str | None:
    """Why the stand-in cannot run kernels here, or None: it needs g++ and the CPU
    emulator's ``compile_module`` (``tests/cuda_emulator``)."""
    if shutil.which("g++") is None:
        return "g++ is not installed: the CPU emulator cannot build kernels/*.cu"
    tests = str(PACKAGE.parent)
    if tests not in sys.path:
        sys.path.insert(0, tests)
    try:
        from cuda_emulator import compile_module  # noqa: F401
    except ImportError as exc:
        return f"the CPU emulator of kernels/*.cu cannot be loaded ({exc})"
    return None


def active() -> bool:
    return _slots.replaced is not None


def module():
    """The stand-in's ``cupy`` module (loaded on first use, without activating it)."""
    if _slots.standin is None:
        with installed(present=False):
            pass
    return _slots.standin["cupy"]


def _install() -> None:
    _slots.replaced = {n: m for n, m in sys.modules.items() if _is_cupy(n)}
    for name in _slots.replaced:
        del sys.modules[name]
    tests = str(PACKAGE.parent)
    if tests not in sys.path:  # the emulator package, tests/cuda_emulator
        sys.path.insert(0, tests)
    if _slots.standin is None:
        _load()
        _slots.standin = {n: m for n, m in sys.modules.items() if _is_cupy(n)}
    else:
        sys.modules.update(_slots.standin)


def _uninstall() -> None:
    _slots.standin = {n: m for n, m in sys.modules.items() if _is_cupy(n)}
    for name in _slots.standin:
        del sys.modules[name]
    sys.modules.update(_slots.replaced)
    _slots.replaced = None


def _swap_ops(to_standin: bool) -> None:
    """Make ``gpunet.ops.cupy_ops`` the copy bound to the stand-in (or to the rest)."""
    current = sys.modules.pop(OPS_MODULE, None)
    if current is not None:
        if current.cupy is _slots.standin["cupy"]:
            _slots.standin_ops = current
        else:
            _slots.other_ops = current
    wanted = _slots.standin_ops if to_standin else _slots.other_ops
    if not to_standin:
        _slots.other_ops = None
    package = sys.modules.get("gpunet.ops")
    if wanted is not None:
        sys.modules[OPS_MODULE] = wanted
    if package is not None:
        if wanted is not None:
            package.cupy_ops = wanted
        elif hasattr(package, "cupy_ops"):
            del package.cupy_ops


def _reset_gpunet_caches() -> None:
    for name, loaded in list(sys.modules.items()):
        if name == "gpunet" or name.startswith("gpunet."):
            for value in list(vars(loaded).values()):
                if callable(getattr(value, "cache_clear", None)) and \
                        getattr(value, "__module__", None) == name:
                    value.cache_clear()


def _reset_streams() -> None:
    from cupy import _streams
    _streams.reset()


@contextlib.contextmanager
def installed(present: bool = True):
    """The stand-in is ``cupy`` inside the block; its device answers when ``present``."""
    if active():
        from cupy import _device
        previous, _device.switch.present = _device.switch.present, present
        try:
            yield sys.modules["cupy"]
        finally:
            _device.switch.present = previous
        return
    _install()
    from cupy import _device
    _device.switch.present = present
    _swap_ops(True)
    _reset_gpunet_caches()
    try:
        yield sys.modules["cupy"]
    finally:
        _reset_streams()
        _swap_ops(False)
        _uninstall()
        _reset_gpunet_caches()


def activate_for_process() -> None:
    """Make the stand-in this process's ``cupy`` for good (an MPI rank of a test job);
    measured by coverage.py where ``COVERAGE_PROCESS_START`` names its configuration
    (``benchmarks/gpu_coverage.py``)."""
    if os.environ.get("COVERAGE_PROCESS_START"):
        import coverage
        coverage.process_startup()
    _install()
    from cupy import _device
    _device.switch.present = True


if os.environ.get("GPUNET_STANDIN_PROCESS") == "1":  # a subprocess the tests started
    activate_for_process()
