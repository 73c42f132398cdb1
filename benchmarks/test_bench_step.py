"""One whole training step per variant (the ``gpunet bench`` variants) at a few batch sizes,
grouped per batch size: numpy, torch and the GEMM floor on the CPU; plain and fused CuPy,
torch and the floor on the GPU."""
import pytest

import gpunet as gn
from gpunet.bench.sweep import build_variant, variant_unavailable
from gpunet.bench.variants import Workload

BATCHES = (64, 1024, 8192)
CASES = [("numpy", "cpu"), ("torch", "cpu"), ("gemm-floor", "cpu")] + [
    pytest.param((name, "gpu"), marks=pytest.mark.gpu, id=f"{name}-gpu")
    for name in ("cupy-unfused", "cupy-fused", "torch", "gemm-floor")]
WORKLOAD = Workload(samples=8192)


@pytest.fixture(scope="module")
def variants():
    """Variants built once per module (model and data on the device), by (name, device)."""
    return {}


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0]}-{c[1]}" if isinstance(c, tuple) else c)
def variant(request, variants):
    name, device = request.param
    if device == "gpu":
        ok, reason = gn.gpu_status()
        if not ok:
            pytest.skip(f"GPU backend unavailable: {reason}")
    reason = variant_unavailable(name, device)
    if reason:
        pytest.skip(f"{name} unavailable: {reason}")
    if (name, device) not in variants:
        variants[name, device] = build_variant(name, gn.get_backend(device), WORKLOAD, False)
    return variants[name, device]


@pytest.mark.parametrize("batch", BATCHES)
def test_train_step(benchmark, variant, batch):
    with variant.active():
        step = variant.step_at(batch)
        step()  # compilation and allocation happen here, untimed

        def call():
            step()
            variant.synchronize()

        benchmark.group = f"train step batch={batch}"
        benchmark(call)
        variant.release()
