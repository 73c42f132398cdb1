"""Every kernel of kernels/*.cu, launched by gpunet's own launchers (unmodified) on the
emulator with NumPy arrays, against NumpyOps (or float64 NumPy), in every schedule: results
are bit-identical across schedules (no kernel depends on block or thread order) and equal to
NumPy's where the arithmetic is the same. tests/test_gemm_emulated.py covers gemm.cu's shapes
and plans.
"""
import numpy as np
import pytest

from cuda_emulator import scheduled
from emulator_support import device, emulated_launchers, replace_once, require_compiler
from gemm_reference import operands
from gpunet.ops.launchers import clip_grad, gemm, linear_relu, optim, softmax_xent, step
from gpunet.ops.numpy_ops import NumpyOps
from gpunet.ops.workspace import Workspace

require_compiler()

MODES = ["sequential", "shuffled", "concurrent"]


@pytest.fixture(params=MODES)
def mode(request):
    with emulated_launchers(), scheduled(request.param, seed=3):
        yield request.param


def poisoned(shape, dtype=np.float32):
    """A device array the kernel must overwrite: NaN (or -1) until it does."""
    return device(np.full(shape, np.nan if np.dtype(dtype).kind == "f" else -1, dtype))


# -- softmax_xent.cu ------------------------------------------------------------------------
def run_softmax(logits, labels):
    grad, error = poisoned(logits.shape), device(np.full(1, softmax_xent.NO_ERROR))
    loss, hits = softmax_xent.softmax_xent(device(logits), device(labels), grad, error,
                                           Workspace(np))
    return loss[()], hits[()], np.asarray(grad), error[0]


@pytest.mark.parametrize("batch, classes", [(1, 3), (37, 1000), (300, 10), (4500, 10)])
@pytest.mark.parametrize("label_type", [np.int32, np.int64])
def test_softmax_cross_entropy(mode, batch, classes, label_type):
    rng = np.random.default_rng(batch)
    logits = (rng.standard_normal((batch, classes)) * 4).astype(np.float32)
    labels = rng.integers(0, classes, batch).astype(label_type)
    loss, hits, grad, error = run_softmax(logits, labels)
    expected_grad = np.empty_like(logits)
    expected_loss, expected_hits = NumpyOps().softmax_cross_entropy(logits, labels,
                                                                     expected_grad)
    assert loss == pytest.approx(expected_loss, rel=1e-6) and hits == expected_hits
    # the row sums of up to 1,000 exponentials: the kernel's in a float32 tree, NumpyOps' in
    # float64; the kernel's gradient is within 3e-7 / batch of the exact one here
    np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=4e-7 / batch + 1e-9)
    assert error == softmax_xent.NO_ERROR
    with scheduled("sequential"):  # the same bits in every schedule
        assert (loss, hits) == run_softmax(logits, labels)[:2]


@pytest.mark.parametrize("weighting", [dict(weight=True), dict(sample_weight=True),
                                       dict(label_smoothing=0.1),
                                       dict(weight=True, sample_weight=True,
                                            label_smoothing=0.2)], ids=str)
def test_weighted_softmax_cross_entropy(mode, weighting):
    """2,500 rows: xent_weight_total and softmax_xent_finish each reduce over 2 blocks."""
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((2500, 7)) * 3).astype(np.float32)
    labels = rng.integers(0, 7, 2500)
    weights = {"weight": (rng.random(7) + 0.5).astype(np.float32),
               "sample_weight": rng.random(2500).astype(np.float32)}
    options = {key: weights[key] if value is True else value for key, value in weighting.items()}
    expected_grad = np.empty_like(logits)
    expected_loss, expected_hits = NumpyOps().softmax_cross_entropy(logits, labels,
                                                                     expected_grad, **options)

    def run():
        grad = poisoned(logits.shape)
        loss, hits = softmax_xent.softmax_xent(
            device(logits), device(labels), grad, device(np.full(1, softmax_xent.NO_ERROR)),
            Workspace(np), **{k: device(v) if isinstance(v, np.ndarray) else v
                              for k, v in options.items()})
        return loss[()], hits[()], np.asarray(grad)

    loss, hits, grad = run()
    assert loss == pytest.approx(expected_loss, rel=1e-6) and hits == expected_hits
    np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=1e-9)
    with scheduled("sequential"):
        assert (loss, hits) == run()[:2]


def test_bad_labels_are_recorded_and_never_used(mode):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((50, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 50)
    labels[[9, 5, 30]] = [7, -3, 2**40]
    loss, hits, grad, error = run_softmax(logits, labels)
    assert softmax_xent.decode_error(int(error)) == (5, -3, False)  # the first bad index
    assert np.isnan(loss) and (grad[[5, 9, 30]] == 0).all() and np.isfinite(grad).all()
    checked = device(np.full(1, softmax_xent.NO_ERROR))
    softmax_xent.check_label_range(device(labels), 7, checked)
    assert checked[0] == error


# -- optim.cu --------------------------------------------------------------------------------
def parameters(n, offset, rng):
    """Float32 device views ``offset`` elements into fresh buffers (misaligned for 1..3)."""
    return [device(np.concatenate([np.zeros(offset, np.float32),
                                   rng.standard_normal(n).astype(np.float32)])[offset:])
            for _ in range(4)]


@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("momentum, nesterov, weight_decay", [(0.0, False, 0.0),
                                                              (0.9, False, 1e-2),
                                                              (0.9, True, 0.0)])
def test_sgd_update_equals_numpy_bit_for_bit(mode, offset, momentum, nesterov, weight_decay):
    rng = np.random.default_rng(offset)
    param, grad, velocity, _ = parameters(1003, offset, rng)
    expected = [np.array(a) for a in (param, grad, velocity)]
    lr = device(np.array([0.05], np.float32))
    for _ in range(3):
        optim.sgd_update(param, grad, velocity if momentum else None, lr, momentum=momentum,
                         weight_decay=weight_decay, nesterov=nesterov)
        NumpyOps().sgd_update(expected[0], expected[1], expected[2] if momentum else None,
                              np.asarray(lr), momentum=momentum, weight_decay=weight_decay,
                              nesterov=nesterov)
    np.testing.assert_array_equal(param, expected[0])
    np.testing.assert_array_equal(velocity, expected[2])


@pytest.mark.parametrize("offset", [0, 3])
@pytest.mark.parametrize("decoupled, weight_decay", [(False, 0.0), (False, 1e-2), (True, 1e-2)])
def test_adam_update_equals_numpy_bit_for_bit(mode, offset, decoupled, weight_decay):
    rng = np.random.default_rng(offset)
    param, grad, exp_avg, exp_avg_sq = parameters(1001, offset, rng)
    exp_avg[...], exp_avg_sq[...] = 0, 0
    expected = [np.array(a) for a in (param, grad, exp_avg, exp_avg_sq)]
    lr, count = device(np.array([1e-3], np.float32)), device(np.zeros(1, np.float32))
    settings = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay,
                    decoupled=decoupled)
    for _ in range(5):
        count += 1
        optim.adam_update(param, grad, exp_avg, exp_avg_sq, lr, count, **settings)
        NumpyOps().adam_update(*expected, np.asarray(lr), np.asarray(count), **settings)
    for got, want in zip((param, exp_avg, exp_avg_sq), (expected[0], *expected[2:])):
        np.testing.assert_array_equal(got, want)


# -- clip_grad.cu ----------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, np.inf, 3.0])
@pytest.mark.parametrize("n, offset", [(1, 0), (1003, 1), (70001, 0)])
def test_grad_norm_and_clip_by_norm(mode, norm_type, n, offset):
    """70,001 values: grad_norm's parts come from 18 blocks, combined by the last one."""
    rng = np.random.default_rng(n)
    grad = device(np.concatenate([np.zeros(offset, np.float32),
                                  rng.standard_normal(n).astype(np.float32)])[offset:])
    norm = poisoned(1)
    clip_grad.grad_norm(grad, norm_type, norm, Workspace(np))
    expected = np.linalg.norm(np.asarray(grad, np.float64), ord=norm_type)
    assert norm[0] == pytest.approx(expected, rel=1e-6)
    with scheduled("sequential"):
        again = poisoned(1)
        clip_grad.grad_norm(grad, norm_type, again, Workspace(np))
    assert again[0] == norm[0]
    expected_grad = np.array(grad)
    NumpyOps().clip_by_norm(expected_grad, 0.5, np.asarray(norm).reshape(()))
    clip_grad.clip_by_norm(grad, 0.5, norm)
    np.testing.assert_array_equal(grad, expected_grad)


def test_a_nan_gradient_makes_a_nan_norm(mode):
    grad = device(np.ones(5000, np.float32))
    grad[4321] = np.nan
    for norm_type in (2.0, np.inf):
        norm = device(np.zeros(1, np.float32))
        clip_grad.grad_norm(grad, norm_type, norm, Workspace(np))
        assert np.isnan(norm[0])


# -- linear_relu.cu --------------------------------------------------------------------------
@pytest.mark.parametrize("rows, cols, offset", [(7, 12, 0), (5, 13, 0), (9, 8, 1), (300, 64, 0)])
@pytest.mark.parametrize("has_bias, relu", [(True, True), (True, False), (False, True)])
def test_bias_act(mode, rows, cols, offset, has_bias, relu):
    rng = np.random.default_rng(rows)
    buffer = rng.standard_normal(rows * cols + offset).astype(np.float32)
    buffer[offset + 3] = np.nan
    out = device(buffer[offset:].reshape(rows, cols))
    bias = rng.standard_normal(cols).astype(np.float32)
    expected = np.array(out) + (bias if has_bias else 0)
    linear_relu.bias_act(out, device(bias) if has_bias else None, relu)
    np.testing.assert_array_equal(out, np.maximum(expected, 0) if relu else expected)


@pytest.mark.parametrize("rows, cols", [(1, 1), (37, 70), (1100, 33)])
@pytest.mark.parametrize("relu", [True, False])
def test_mask_bias_grad(mode, rows, cols, relu):
    rng = np.random.default_rng(cols)
    grad_out = rng.standard_normal((rows, cols)).astype(np.float32)
    saved = np.maximum(rng.standard_normal((rows, cols)).astype(np.float32), 0)
    grad_z, grad_bias = poisoned(grad_out.shape), poisoned(cols)
    linear_relu.mask_bias_grad(device(grad_out), device(saved) if relu else None, grad_z,
                               grad_bias, Workspace(np))
    masked = grad_out * (saved > 0) if relu else grad_out
    if relu:
        np.testing.assert_array_equal(grad_z, masked)
    np.testing.assert_allclose(grad_bias, masked.sum(0, dtype=np.float64), rtol=1e-5, atol=1e-5)


def test_a_dropped_syncthreads_is_caught():
    """mask_bias_grad_partial without its barrier: row 0 of threads sums shared memory the
    other rows have not written yet (the emulator's unwritten shared memory reads as NaN)."""
    kept = "    if (threadIdx.y == 0"
    edit = replace_once("    __syncthreads();\n" + kept, kept, "mask_bias_grad_partial")
    grad_out = np.ones((64, 40), np.float32)
    for mode in MODES:
        grad_bias = poisoned(40)
        with emulated_launchers({"linear_relu": edit}), scheduled(mode):
            linear_relu.mask_bias_grad(device(grad_out), None, None, grad_bias, Workspace(np))
        assert not np.array_equal(grad_bias, grad_out.sum(0)), mode


# -- step.cu ---------------------------------------------------------------------------------
@pytest.mark.parametrize("x_type", [np.uint8, np.float32])
@pytest.mark.parametrize("y_type", [np.int32, np.int64])
def test_gather_batch_and_end_step(mode, x_type, y_type):
    rng = np.random.default_rng(0)
    X = (rng.integers(0, 256, (50, 17)) if x_type == np.uint8
         else rng.standard_normal((50, 17))).astype(x_type)
    y = rng.integers(0, 10, 50).astype(y_type)
    order, cursor = rng.permutation(50).astype(np.int64), np.array([8], np.int64)
    x_out, y_out = poisoned((16, 17)), poisoned((16,), y_type)
    step.gather_batch(device(X), device(y), device(order), device(cursor), x_out, y_out)
    expected_x, expected_y = np.empty((16, 17), np.float32), np.empty(16, y_type)
    NumpyOps().gather_batch(X, y, order, cursor, expected_x, expected_y)
    np.testing.assert_array_equal(x_out, expected_x)
    np.testing.assert_array_equal(y_out, expected_y)
    losses, hits = poisoned((4,), np.float64), poisoned((4,), np.int64)
    step.end_step(device(cursor), 16, 16, device(np.float32([0.25])), device(np.int64([9])),
                  losses, hits)
    assert cursor[0] == 24 and losses[0] == 0.25 and hits[0] == 9
    assert np.isnan(losses[[1, 2, 3]]).all()


# -- gemm.cu ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tiles", gemm.CONFIGS, ids=lambda t: f"{t.bm}x{t.bn}")
def test_gemm_is_bit_identical_in_every_schedule(mode, tiles):
    rng = np.random.default_rng(0)
    p = gemm.make_plan(tiles, tiles.bm + 5, tiles.bn + 3, 3 * tiles.bk + 1, 3)
    a, b, bias, out = operands(rng, p.m, p.n, p.k, False, True, True)
    results = []
    for schedule in (mode, "sequential"):
        out[...] = np.nan
        with scheduled(schedule):
            gemm.run_plan(p, device(a), device(b), device(out), False, True, Workspace(np),
                          device(bias), True)
        results.append(out.copy())
    np.testing.assert_array_equal(*results)
    np.testing.assert_allclose(results[0], np.maximum(a.astype(np.float64) @ b.T.astype(
        np.float64) + bias, 0), rtol=1e-4, atol=1e-4)
