"""Shared fixtures: ``backend`` runs a test on the CPU always and on the GPU, where a GPU is a
CUDA device, or else the CuPy stand-in; ``fashion_mnist`` is the real dataset, read from disk
once per session (never downloaded).

Where the GPU tests run (``GPUNET_TEST_CUDA``):

- unset: a CUDA device where one answers; else the CuPy stand-in (``tests/cupy_standin``:
  NumPy and the CPU emulator of ``kernels/*.cu`` behind CuPy's interface) for the GPU tests
  of the default subset (:data:`FULL_ONLY` lists what stays out of it, to keep the plain
  run short); the others skip saying how to run them.
- ``stand-in``: every GPU test on the stand-in (``GPUNET_TEST_CUDA=stand-in pytest -m gpu``).
- ``device``: a CUDA device only (GPU tests skip without one).

How the stand-in is activated: per test. The GPU tests (marked ``gpu``, which the
``backend`` fixture's "gpu" case is) run inside ``standin.installed()``: for the test's
setup, call and teardown the stand-in is ``sys.modules["cupy"]``, its device answers, and
gpunet's GPU caches (the ``lru_cache``s of the probe, the backends and the compiled kernels,
and ``gpunet/ops/cupy_ops.py``'s binding of ``cupy``) are reset on the way in and out; see
``tests/standin.py``. Every other test sees what this machine has (no stand-in: on a CPU
box ``get_backend("auto")`` is the CPU). Test modules that bind ``cupy`` at import (the GPU
test files) are imported with the stand-in installed, its device off.
"""
import contextlib
import os

import numpy as np
import pytest

import gpunet as gn
import standin

MODES = ("stand-in", "device")
MODE = os.environ.get("GPUNET_TEST_CUDA", "")
if MODE not in MODES + ("",):
    raise pytest.UsageError(f"GPUNET_TEST_CUDA must be one of {MODES} or unset, got {MODE!r}")
# GPU tests left out of the default run's stand-in subset (node-id prefixes): they run with
# GPUNET_TEST_CUDA=stand-in (and on a device).
FULL_ONLY: tuple = ()


def _device_answers() -> bool:
    ok = gn.gpu_status()[0]
    gn.gpu_status.cache_clear()
    return ok


USE_STANDIN = MODE == "stand-in" or (MODE == "" and not _device_answers())


def _require_gpu():
    ok, reason = gn.gpu_status()
    if not ok:
        pytest.skip(f"GPU backend unavailable: {reason}")


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def backend(request):
    """The backend under test; the GPU case skips with the probe's reason where none answers."""
    if request.param == "gpu":
        _require_gpu()
    return gn.get_backend(request.param)


def _on_gpu(item) -> bool:
    return item.get_closest_marker("gpu") is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session):
    """Test modules that bind ``cupy`` at import see the stand-in (device off)."""
    if not USE_STANDIN:
        yield
        return
    with standin.installed(present=False):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if USE_STANDIN and _on_gpu(item):
        with standin.installed():
            yield
    else:
        yield


def pytest_runtest_setup(item):
    if not _on_gpu(item):
        return
    if USE_STANDIN and MODE == "" and item.nodeid.startswith(FULL_ONLY):
        pytest.skip("left out of the default run's stand-in subset (time); run it with "
                    "GPUNET_TEST_CUDA=stand-in python -m pytest -m gpu")
    if "backend" not in item.fixturenames:
        _require_gpu()


@pytest.fixture(scope="session")
def fashion_mnist():
    """Fashion-MNIST's ``((X, y), (X_test, y_test))`` from disk: a source checkout ships it in
    data/fashion-mnist. Skips with the reason where it cannot be found."""
    try:
        return gn.datasets.fashion_mnist(download=False)
    except gn.datasets.DatasetError as exc:
        pytest.skip(f"Fashion-MNIST not on disk (a source checkout ships it in "
                    f"data/fashion-mnist): {exc}")


@pytest.fixture
def relaxed_capture():
    """A context in which allocating inside a stream capture is allowed, as CuPy's relaxed
    capture mode allows it on a device (the stand-in refuses it by default: gpunet's rule)."""
    if standin.active():
        import cupy
        return cupy._memory.relaxed_capture
    return contextlib.nullcontext


@pytest.fixture
def device_size():
    """``device_size(real, stand_in)``: ``real`` on a device, ``stand_in`` on the stand-in
    (a size whose emulated run would take minutes, cut to one that still tests the same
    path: e.g. more elements than one grid of the grid-stride kernels)."""
    return lambda real, stand_in: stand_in if standin.active() else real


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
