"""The backend: device choice, probe messages, array checks, seeding, moving models."""
import builtins
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import gpunet as gn
from gpunet import backend as backend_module


def test_cpu_backend_is_numpy():
    b = gn.get_backend("cpu")
    assert b.xp is np and b.name == "cpu" and b.ops.xp is np


def test_auto_picks_a_working_backend():
    b = gn.get_backend("auto")
    assert b.name == ("gpu" if gn.gpu_status()[0] else "cpu")


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match=r"device must be one of \('cpu', 'gpu', 'auto'\), got 'cuda'"):
        gn.get_backend("cuda")


def test_gpu_request_without_gpu_says_why():
    ok, reason = gn.gpu_status()
    if ok:
        pytest.skip("a GPU answers here; the refusal path is not reachable")
    with pytest.raises(gn.BackendUnavailable, match="GPU backend is unavailable: " + reason[:20]):
        gn.get_backend("gpu")
    with pytest.raises(gn.BackendUnavailable):
        gn.Linear(2, 2).to("gpu")


def test_probe_reports_missing_cupy(monkeypatch):
    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    backend_module.gpu_status.cache_clear()
    try:
        ok, reason = backend_module.gpu_status()
        assert not ok and "CuPy is not installed" in reason and ".[cuda13]" in reason
        assert gn.get_backend("auto").name == "cpu"
    finally:
        backend_module.gpu_status.cache_clear()


def test_probe_reports_kernels_that_cannot_compile(monkeypatch):
    """A driver and a device but no CUDA headers: the reason says so and names the fix."""
    class FakeArray:
        def get(self):
            return np.zeros(4, np.float32)

        def sum(self):
            raise RuntimeError("CompileException: Failed to find CUDA headers\nmore detail")

    fake = types.SimpleNamespace(
        float32=np.float32,
        cuda=types.SimpleNamespace(
            runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
            Device=lambda i: types.SimpleNamespace(compute_capability="90")),
        zeros=lambda *a, **k: FakeArray(), arange=lambda *a, **k: FakeArray())
    monkeypatch.setitem(sys.modules, "cupy", fake)
    backend_module.gpu_status.cache_clear()
    try:
        ok, reason = backend_module.gpu_status()
    finally:
        backend_module.gpu_status.cache_clear()
    assert not ok
    assert reason.startswith("CuPy is installed but cannot compile kernels: CompileException: "
                             "Failed to find CUDA headers;"), reason
    assert "more detail" not in reason and backend_module.INSTALL_HINT in reason


def test_install_hints_are_the_readme_commands():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    commands = re.findall(r'pip install [^ ]+ "[^"]+"', backend_module.INSTALL_HINT)
    assert len(commands) == 2
    for command in commands:
        assert command in readme, f"README lacks the hint's command {command!r}"


def test_to_numpy_passes_numpy_through():
    a = np.arange(3)
    assert gn.to_numpy(a) is a


def test_check_array_names_both_types():
    with pytest.raises(TypeError, match="numpy.ndarray for the cpu backend, got builtins.list"):
        gn.get_backend("cpu").check_array([1, 2])


def test_manual_seed_validates():
    with pytest.raises(ValueError, match="non-negative integer"):
        gn.manual_seed(-1)
    with pytest.raises(ValueError, match="non-negative integer"):
        gn.manual_seed(1.5)


def test_shuffles_are_reproducible():
    b = gn.get_backend("cpu")
    gn.manual_seed(3)
    first = b.permutation(10)
    gn.manual_seed(3)
    np.testing.assert_array_equal(b.permutation(10), first)
    assert sorted(first) == list(range(10))


def test_model_moves_between_backends(backend, rng):
    model = gn.Sequential(gn.Linear(3, 4), gn.ReLU(), gn.Linear(4, 2))
    x = rng.standard_normal((2, 3)).astype(np.float32)
    expected = model(x).copy()
    model.to(backend.name)
    assert model.device == backend.name
    assert all(isinstance(p.data, backend.xp.ndarray) for p in model.parameters())
    out = model(backend.asarray(x))
    np.testing.assert_allclose(gn.to_numpy(out), expected, rtol=1e-5)
    model.to("cpu")
    np.testing.assert_allclose(model(x), expected, rtol=1e-5)
