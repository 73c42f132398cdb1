"""CPU and GPU agree on a whole training run: same seed, data and batches, 100 steps."""
import numpy as np
import pytest

import gpunet as gn

STEPS, BATCH, SAMPLES = 100, 32, 640


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
    return np.array([float(loss) for loss in losses])


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
    cpu = _train("cpu", make_optimizer, x, y)
    gpu = _train("gpu", make_optimizer, x, y)
    assert cpu[-10:].mean() < 0.7 * cpu[:10].mean(), "no learning: a vacuous comparison"
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3)
