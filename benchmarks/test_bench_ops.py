"""Micro-benchmarks of each primitive: NumPy ops (CPU), plain CuPy ops and fused kernels (GPU),
at the lecture model's shapes; results grouped per op and batch size for side-by-side reading."""
import numpy as np
import pytest

BATCHES = (256, 4096)
HIDDEN = 512
NUM_PARAMS = 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10  # the 784-512-512-10 MLP


def run(benchmark, case, group, fn):
    """Benchmark ``fn`` (synchronised on the GPU) after one untimed call (compilation)."""
    def call():
        fn()
        case.synchronize()

    call()
    benchmark.group = group
    benchmark(call)


def floats(case, rng, *shape, scale=1.0):
    return case.array((rng.standard_normal(shape) * scale).astype(np.float32))


@pytest.mark.parametrize("batch", BATCHES)
def test_linear_relu_forward(benchmark, ops_case, rng, batch):
    x, w = floats(ops_case, rng, batch, 784), floats(ops_case, rng, HIDDEN, 784, scale=0.05)
    b, out = floats(ops_case, rng, HIDDEN), ops_case.xp.empty((batch, HIDDEN), np.float32)
    run(benchmark, ops_case, f"linear_relu_forward 784->512 batch={batch}",
        lambda: ops_case.ops.linear_relu_forward(x, w, b, out))


@pytest.mark.parametrize("batch", BATCHES)
def test_linear_relu_backward(benchmark, ops_case, rng, batch):
    xp = ops_case.xp
    x, w = floats(ops_case, rng, batch, HIDDEN), floats(ops_case, rng, HIDDEN, HIDDEN)
    out = xp.maximum(floats(ops_case, rng, batch, HIDDEN), 0)
    grad_out = floats(ops_case, rng, batch, HIDDEN)
    grad_w, grad_b = xp.empty_like(w), xp.empty(HIDDEN, np.float32)
    grad_z, grad_x = xp.empty_like(out), xp.empty_like(x)
    run(benchmark, ops_case, f"linear_relu_backward 512->512 batch={batch}",
        lambda: ops_case.ops.linear_relu_backward(grad_out, out, x, w, grad_w, grad_b, grad_z,
                                                  grad_x))


@pytest.mark.parametrize("batch", BATCHES)
def test_softmax_cross_entropy(benchmark, ops_case, rng, batch):
    logits = floats(ops_case, rng, batch, 10, scale=3.0)
    labels = ops_case.array(rng.integers(0, 10, batch))
    grad = ops_case.xp.empty_like(logits)
    run(benchmark, ops_case, f"softmax_cross_entropy 10 classes batch={batch}",
        lambda: ops_case.ops.softmax_cross_entropy(logits, labels, grad))


def test_sgd_update(benchmark, ops_case, rng):
    param, grad = floats(ops_case, rng, NUM_PARAMS), floats(ops_case, rng, NUM_PARAMS)
    velocity, lr = ops_case.xp.zeros_like(param), ops_case.xp.full(1, 0.01, np.float32)
    run(benchmark, ops_case, f"sgd_update momentum {NUM_PARAMS} parameters",
        lambda: ops_case.ops.sgd_update(param, grad, velocity, lr, momentum=0.9,
                                        weight_decay=0.0, nesterov=False))


def test_adam_update(benchmark, ops_case, rng):
    xp = ops_case.xp
    param, grad = floats(ops_case, rng, NUM_PARAMS), floats(ops_case, rng, NUM_PARAMS)
    exp_avg, exp_avg_sq = xp.zeros_like(param), xp.zeros_like(param)
    lr, step = xp.full(1, 1e-3, np.float32), xp.full(1, 10, np.float32)
    run(benchmark, ops_case, f"adam_update {NUM_PARAMS} parameters",
        lambda: ops_case.ops.adam_update(param, grad, exp_avg, exp_avg_sq, lr, step,
                                         beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                                         decoupled=False))
