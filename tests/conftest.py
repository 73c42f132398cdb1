"""Shared fixtures: ``backend`` runs a test on the CPU always and on the GPU, where a GPU is a
CUDA device, or else the CuPy stand-in; ``fashion_mnist`` is the real dataset, read from disk
once per session (never downloaded).

Where the GPU tests run (``GPUNET_TEST_CUDA``):

- unset: a CUDA device where one answers; else the CuPy stand-in (``tests/cupy_standin``:
  NumPy and the CPU emulator of ``kernels/*.cu`` behind CuPy's interface) for the GPU tests
  of the default subset (:data:`FULL_ONLY` lists what stays out of it: larger sizes and
  longer runs of paths the subset takes, to keep the plain run short); the others skip
  saying how to run them.
- ``stand-in``: every GPU test on the stand-in (``GPUNET_TEST_CUDA=stand-in pytest -m gpu``).
- ``stand-in-subset``: the default subset on the stand-in, even where a device answers
  (``benchmarks/gpu_coverage.py``: the sizes left out add no lines).
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
import fnmatch
import os

import numpy as np
import pytest

import gpunet as gn
import standin

MODES = ("stand-in", "stand-in-subset", "device")
MODE = os.environ.get("GPUNET_TEST_CUDA", "")
# GPU tests left out of the stand-in's default subset (node-id patterns), each a larger size
# or a longer run of a path the subset takes; they run with GPUNET_TEST_CUDA=stand-in.
FULL_ONLY = (
    # larger sizes of the paths the subset takes at small ones
    "tests/test_cupy_ops.py::test_softmax_cross_entropy[*-40000-*]",
    "tests/test_cupy_ops.py::test_*_update[5000000-*]",
    "tests/test_gpu_path.py::test_loss_at_batch_1_and_65536_*[65536-*]",
    "tests/test_gpu_path.py::test_linear_ops_at_batch_1_and_65536[*-65536-*]",
    # longer runs, and what other tests of the subset take (test_gemm_emulated.py runs every
    # tile configuration of gemm.cu on the emulator)
    "tests/test_gpu_path.py::test_adam_matches_pytorch_over_1000_steps[Adam-0.0]",
    "tests/test_gpu_gemm.py::test_every_configuration_instantiation_and_split[*]",
    "tests/test_gpu_gemm.py::test_training_products_on_this_device_repeat_*",
    "tests/test_optim.py::test_adam_bias_correction_matches_pytorch_over_1000_steps[gpu-*]",
    "tests/test_gradcheck.py::test_directional_catches_one_wrong_entry_of_*[gpu-*]",
    "tests/test_lecture.py::test_one_hidden_layer_fits_sine[gpu]",
    "tests/test_sklearn.py::test_an_estimator_trains_and_pickles_on_every_backend[gpu]",
)


def _full_only(nodeid: str) -> bool:
    """Whether a pattern of FULL_ONLY matches (``[`` there is literal, not fnmatch's set)."""
    return any(fnmatch.fnmatchcase(nodeid, pattern.replace("[", "[[]"))
               for pattern in FULL_ONLY)


def _device_answers() -> bool:
    ok = gn.gpu_status()[0]
    gn.gpu_status.cache_clear()
    return ok


USE_STANDIN = MODE.startswith("stand-in") or (MODE == "" and not _device_answers())
SUBSET = MODE != "stand-in"
STANDIN_UNUSABLE = standin.unusable() if USE_STANDIN else None
USE_STANDIN = USE_STANDIN and not STANDIN_UNUSABLE


def pytest_configure(config):
    if MODE not in MODES + ("",):
        raise pytest.UsageError(f"GPUNET_TEST_CUDA must be one of {MODES} or unset, got "
                                f"{MODE!r}")
    if STANDIN_UNUSABLE and MODE.startswith("stand-in"):
        raise pytest.UsageError(f"GPUNET_TEST_CUDA={MODE}, but {STANDIN_UNUSABLE}")


def _require_gpu():
    ok, reason = gn.gpu_status()
    if not ok:
        pytest.skip(f"GPU backend unavailable: {reason}" + (
            f"; the CuPy stand-in cannot stand in: {STANDIN_UNUSABLE}" if STANDIN_UNUSABLE
            else ""))


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
    if USE_STANDIN and SUBSET and _full_only(item.nodeid):
        pytest.skip("a larger size or a longer run than the stand-in's default subset takes; "
                    "run it with GPUNET_TEST_CUDA=stand-in python -m pytest -m gpu")
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
def rng():
    return np.random.default_rng(1234)
