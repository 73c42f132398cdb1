"""Shared fixtures: ``backend`` runs a test on the CPU always and on the GPU when one answers;
``fashion_mnist`` is the real dataset, read from disk once per session (never downloaded)."""
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
def rng():
    return np.random.default_rng(1234)
