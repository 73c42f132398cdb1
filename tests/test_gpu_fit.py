"""``fit`` on the GPU against ``fit`` on the CPU for every graph mode, and one captured step
replayed after the learning rate and the cursor changed in device memory.

On the CuPy stand-in the cuBLAS route's GEMMs are NumPy's, the tiled route's and the fused
kernels run emulated in float32: what differs from the CPU is the order of float32 operations.
Measured after these 100 steps (largest difference over the parameters, relative to each
one's scale): SGD 3.5e-7 (off), 5.6e-7 (on), 4.2e-7 (auto); AdamW 1.4e-7, 1.5e-6, 2.0e-7.
AdamW's 1.5e-6 is its sensitivity to rounding, not an error: on the CPU alone, GEMMs summed
in float64 instead of float32 move the same run's weights 9.2e-7 of their scale. Hence
2e-6 on the stand-in; a device's GEMMs sum in their own order, hence 1e-4 there (as
``test_gpu_training.py``). A wrong kernel compounds over 100 steps far past either.
"""
import math

import numpy as np
import pytest

import gpunet as gn
import standin
from gpunet.training.engine.step_runner import StepRunner

pytestmark = pytest.mark.gpu
EPOCHS, BATCH, SAMPLES = 4, 32, 790  # 24 full batches and one of 22 an epoch: 100 steps
OPTIMIZERS = {
    "sgd": lambda p: gn.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adamw": lambda p: gn.optim.AdamW(p, lr=2e-3),
}


def _data(n=SAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, 256, (10, 6, 6))
    y = rng.integers(0, 10, n)
    return np.clip(centers[y] + rng.normal(0, 50, (n, 6, 6)), 0, 255).astype(np.uint8), y


def _model(device):
    gn.manual_seed(0)
    return gn.Sequential(gn.Flatten(), gn.Linear(36, 40), gn.ReLU(), gn.Linear(40, 24),
                         gn.ReLU(), gn.Linear(24, 10)).to(device)


def _fit(device, graph, make_opt):
    model = _model(device)
    history = gn.fit(model, gn.CrossEntropyLoss(), make_opt(model.parameters()), _data(),
                     val=_data(n=150, seed=1), epochs=EPOCHS, batch_size=BATCH, seed=7,
                     progress=False, verbose=False, graph=graph)
    return [gn.to_numpy(p.data) for p in model.parameters()], history


@pytest.fixture
def same_shuffles(monkeypatch):
    """The GPU's epochs draw the CPU's permutations (a device's cuRAND draws others)."""
    gpu, cpu = gn.get_backend("gpu"), gn.get_backend("cpu")
    monkeypatch.setattr(gpu, "permutation", lambda n: gpu.asarray(cpu.permutation(n)))


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("graph", ["off", "on", "auto"])
def test_fit_on_the_gpu_equals_fit_on_the_cpu(same_shuffles, graph, opt_name):
    cpu_weights, cpu_history = _fit("cpu", "off", OPTIMIZERS[opt_name])
    gpu_weights, gpu_history = _fit("gpu", graph, OPTIMIZERS[opt_name])
    assert cpu_history["train_loss"][-1] < 0.7 * cpu_history["train_loss"][0], "no learning"
    rtol = 2e-6 if standin.active() else 1e-4
    for i, (got, want) in enumerate(zip(gpu_weights, cpu_weights)):
        scale = float(np.abs(want).max())
        error = float(np.abs(got - want).max())
        assert error <= rtol * scale, f"parameter {i}: {error:.3g} off, {error / scale:.2g} " \
                                      f"of its scale, after {EPOCHS * 25} steps"
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose(gpu_history[key], cpu_history[key], rtol=10 * rtol)
    assert gpu_history["val_accuracy"] == pytest.approx(cpu_history["val_accuracy"], abs=0.01)


def _runner(stream, make_opt):
    model = _model("gpu")
    optimizer = make_opt(model.parameters())
    X, y = (gn.get_backend("gpu").asarray(a) for a in _data(n=320))
    return model, optimizer, StepRunner(model, optimizer, X, y, BATCH, 10, stream)


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_a_captured_step_replays_after_an_lr_change_and_a_cursor_advance(opt_name):
    """One training step recorded as a CUDA graph, then replayed after the host changed the
    learning rate and moved the cursor (both in device memory): each replay equals the same
    step run uncaptured (the GEMMs on the tiled kernel for both: the captured route), so a
    replay that kept a value from the recording fails."""
    import cupy

    ops = gn.get_backend("gpu").ops
    routes, ops.gemm_routes = ops.gemm_routes, ((math.inf, "tiled"),)
    stream = cupy.cuda.Stream(non_blocking=True)
    try:
        runs = [_runner(s, OPTIMIZERS[opt_name]) for s in (stream, None)]
        for _, _, runner in runs:
            gn.manual_seed(11)
            runner.start_epoch()
        cupy.cuda.Device().synchronize()
        with stream:
            for step in range(7):
                if step == 3:  # after the recording (call 2): a new rate, a batch skipped
                    for _, optimizer, runner in runs:
                        optimizer.lr = optimizer.lr / 4
                        runner.epoch.cursor += BATCH
                for _, _, runner in runs:
                    runner.run(step)
                stream.synchronize()
                (captured, _, _), (eager, _, _) = runs
                for a, b in zip(captured.parameters(), eager.parameters()):
                    np.testing.assert_array_equal(gn.to_numpy(a.data), gn.to_numpy(b.data),
                                                  err_msg=f"after step {step}")
        graph_step = runs[0][2].steps[0]
        assert graph_step.graph is not None and graph_step.runs == 7  # 1 warm-up, 6 replays
        assert int(runs[0][2].epoch.cursor[0]) == 8 * BATCH
    finally:
        ops.gemm_routes = routes
        for _, _, runner in runs:
            runner.close()
