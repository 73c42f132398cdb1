"""CPU and GPU agree on a whole training run: same seed, data and batches, 100 steps.

Rounding differences (GEMM summation order, expf/logf) stay near 1e-6 relative over the run
(emulated by training on the CPU with float64-accumulated GEMMs: losses within 9e-7,
weights within 5e-7 of their scale), so rtol 1e-4 leaves room for the device's own order
while a real error in any kernel, which compounds over 100 steps, does not fit.
"""
import numpy as np
import pytest

import gpunet as gn

STEPS, BATCH, SAMPLES = 100, 32, 640
RTOL = 1e-4


def _train(device, make_optimizer, x, y):
    gn.manual_seed(0)
    model = gn.Sequential(gn.Linear(x.shape[1], 96), gn.ReLU(), gn.Linear(96, 48), gn.ReLU(),
                          gn.Linear(48, 10)).to(device)
    backend = gn.get_backend(device)
    optimizer = make_optimizer(model.parameters())
    loss_fn = gn.CrossEntropyLoss()
    losses = []
    for step in range(STEPS):
        start = (step * BATCH) % SAMPLES
        xb = backend.asarray(x[start:start + BATCH])
        yb = backend.asarray(y[start:start + BATCH])
        losses.append(loss_fn(model(xb), yb))
        model.backward(loss_fn.backward(), input_grad=False)
        optimizer.step()
    backend.ops.check_errors()
    return np.array([float(loss) for loss in losses]), model.state_dict()


@pytest.mark.gpu
@pytest.mark.parametrize("make_optimizer", [
    lambda p: gn.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4),
    lambda p: gn.optim.AdamW(p, lr=1e-3),
], ids=["sgd-nesterov", "adamw"])
def test_cpu_and_gpu_losses_agree_over_100_steps(make_optimizer):
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((10, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=SAMPLES)
    x = (centers[y] + 2.0 * rng.standard_normal((SAMPLES, 64))).astype(np.float32)
    cpu, cpu_state = _train("cpu", make_optimizer, x, y)
    gpu, gpu_state = _train("gpu", make_optimizer, x, y)
    assert cpu[-10:].mean() < 0.7 * cpu[:10].mean(), "no learning: a vacuous comparison"
    np.testing.assert_allclose(gpu, cpu, rtol=RTOL)
    for name, want in cpu_state.items():
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(gpu_state[name], want, rtol=RTOL, atol=RTOL * scale,
                                   err_msg=f"parameter {name} after {STEPS} steps")
