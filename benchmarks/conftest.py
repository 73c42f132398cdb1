"""Fixtures of the pytest-benchmark suite (``pytest benchmarks --benchmark-only``).

The normal test run never collects this folder (``testpaths = ["tests"]``). GPU cases skip
with the probe's reason where no device answers; every benchmarked call on the GPU ends with
a stream synchronisation, so the time is the device's, not the launch's.
"""
import numpy as np
import pytest

import gpunet as gn
from gpunet.ops.numpy_ops import NumpyOps


def gpu_backend():
    """The GPU backend, or a skip naming why there is none."""
    ok, reason = gn.gpu_status()
    if not ok:
        pytest.skip(f"GPU backend unavailable: {reason}")
    return gn.get_backend("gpu")


def fused_ops():
    """The fused CuPy ops, or a skip naming why they do not import."""
    try:
        from gpunet.ops.cupy_ops import CupyOps
    except ImportError as exc:
        pytest.skip(f"fused CuPy ops unavailable: {exc}")
    return CupyOps()


class OpsCase:
    """One ops implementation on its backend, with the synchronisation its timing needs."""

    def __init__(self, name, backend, ops):
        self.name, self.backend, self.ops, self.xp = name, backend, ops, backend.xp

    def synchronize(self):
        if self.backend.name == "gpu":
            self.xp.cuda.get_current_stream().synchronize()

    def array(self, host):
        """A device copy of a host array."""
        return self.backend.asarray(host)


@pytest.fixture(params=["numpy", pytest.param("cupy-unfused", marks=pytest.mark.gpu),
                        pytest.param("cupy-fused", marks=pytest.mark.gpu)])
def ops_case(request):
    """NumPy ops on the CPU, plain CuPy ops and the fused kernels on the GPU."""
    if request.param == "numpy":
        return OpsCase("numpy", gn.get_backend("cpu"), NumpyOps(np))
    backend = gpu_backend()
    ops = NumpyOps(backend.xp) if request.param == "cupy-unfused" else fused_ops()
    return OpsCase(request.param, backend, ops)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
