"""Shared fixtures: ``backend`` runs a test on the CPU always and on the GPU when one answers."""
import numpy as np
import pytest

import gpunet as gn


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


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") and "backend" not in item.fixturenames:
        _require_gpu()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
