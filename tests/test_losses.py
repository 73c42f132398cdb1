"""Losses: float64 gradient checks, values against direct formulas, label validation."""
import numpy as np
import pytest

import gpunet as gn


def _arr(backend, a, dtype=np.float64):
    return backend.asarray(a, dtype=dtype)


def test_losses_pass_gradcheck(backend, rng):
    logits = _arr(backend, rng.standard_normal((6, 4)))
    labels = _arr(backend, rng.integers(0, 4, 6), dtype=np.int64)
    assert gn.gradcheck(gn.CrossEntropyLoss(), logits, labels)
    logp = _arr(backend, rng.standard_normal((6, 4)))
    assert gn.gradcheck(gn.NLLLoss(), logp, labels)
    pred, target = (_arr(backend, rng.standard_normal((6, 2))) for _ in range(2))
    assert gn.gradcheck(gn.MSELoss(), pred, target)
    binary = _arr(backend, rng.integers(0, 2, (6, 1)))
    assert gn.gradcheck(gn.BCEWithLogitsLoss(), _arr(backend, rng.standard_normal((6, 1))),
                        binary)


def test_cross_entropy_value_gradient_and_correct_count(backend, rng):
    z = rng.standard_normal((8, 5)).astype(np.float32)
    y = rng.integers(0, 5, 8)
    loss_fn = gn.CrossEntropyLoss()
    loss = loss_fn(_arr(backend, z, np.float32), _arr(backend, y, np.int64))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert loss.shape == ()
    np.testing.assert_allclose(float(loss), -np.log(p[np.arange(8), y]).mean(), rtol=1e-5)
    onehot = np.eye(5)[y]
    np.testing.assert_allclose(gn.to_numpy(loss_fn.backward()), (p - onehot) / 8, atol=1e-7)
    assert int(loss_fn.last_correct) == int((z.argmax(1) == y).sum())


@pytest.mark.parametrize("rows", [40, 400])
@pytest.mark.parametrize("models", [(), (3,)])
def test_correct_count_is_argmax_through_ties_infinities_and_nan(rng, models, rows):
    """Rows count as argmax counts them (the first maximum, or the first NaN), per model of
    a stack, in both of the softmax's layouts."""
    from gpunet.ops.numpy_ops import NumpyOps

    assert NumpyOps._class_major(rows, 6) == (rows == 400)
    z = rng.integers(0, 3, size=(*models, rows, 6)).astype(np.float32)  # many ties
    y = rng.integers(0, 6, rows)
    z[..., 7, :] = 0.0  # a row of six maxima: correct only for label 0
    y[7] = 3
    z[..., 9, 2] = np.nan  # argmax says class 2
    z[..., 10, 4] = np.nan
    y[9], y[10] = 2, 1
    z[..., 11, :] = -np.inf  # all maxima: argmax says class 0
    y[11] = 0
    z[..., 13, y[13]] = np.inf
    grad = np.empty_like(z)
    with np.errstate(invalid="ignore"):
        loss, correct = NumpyOps().softmax_cross_entropy(z, y, grad)
    np.testing.assert_array_equal(correct, (z.argmax(-1) == y).sum(-1))
    assert np.isnan(loss).all()


def test_cross_entropy_equals_logsoftmax_then_nll(rng):
    z = rng.standard_normal((7, 3))
    y = rng.integers(0, 3, 7)
    ce = float(gn.CrossEntropyLoss()(z, y))
    nll = float(gn.NLLLoss()(gn.LogSoftmax(dtype="float64")(z), y))
    np.testing.assert_allclose(ce, nll, rtol=1e-12)


def test_cross_entropy_survives_extreme_logits():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], np.float32)
    loss_fn = gn.CrossEntropyLoss()
    loss = loss_fn(z, np.array([1, 2]))
    assert np.isfinite(float(loss)) and np.isfinite(loss_fn.backward()).all()
    np.testing.assert_allclose(float(loss), (2e4 + np.log(3)) / 2, rtol=1e-5)


def test_mse_and_bce_values(rng):
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    np.testing.assert_allclose(float(gn.MSELoss()(a, b)), ((a - b) ** 2).mean())
    z = np.array([[-800.0], [0.0], [800.0]])
    t = np.array([[0.0], [1.0], [0.0]])
    expected = np.mean([0.0, np.log(2), 800.0])
    np.testing.assert_allclose(float(gn.BCEWithLogitsLoss()(z, t)), expected)


@pytest.mark.parametrize("loss_cls", [gn.CrossEntropyLoss, gn.NLLLoss])
def test_label_errors_name_the_problem(loss_cls):
    loss_fn = loss_cls()
    z = np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError, match="integer class labels, got dtype float64"):
        loss_fn(z, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="label 4 at index 1 is out of range.*\\[0, 4\\)"):
        loss_fn(z, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="label -1 at index 0"):
        loss_fn(z, np.array([-1, 0, 1]))
    with pytest.raises(ValueError, match="expects 3 labels.*shape \\(2,\\)"):
        loss_fn(z, np.array([0, 1]))
    with pytest.raises(ValueError, match="2-D \\(batch, classes\\) input, got shape \\(3,\\)"):
        loss_fn(np.zeros(3, np.float32), np.array([0, 1, 2]))


def test_regression_losses_check_shapes():
    with pytest.raises(ValueError, match="target of the prediction's shape \\(3, 2\\), got \\(3,\\)"):
        gn.MSELoss()(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"got \(2,\) \(for one output per sample, .*y\[:, None\]"):
        gn.MSELoss()(np.zeros((3, 1)), np.zeros(2))


@pytest.mark.parametrize("make", [gn.MSELoss, gn.BCEWithLogitsLoss])
def test_one_target_per_sample_fits_a_one_output_model(make):
    z = np.array([[0.5], [-1.0], [2.0]])
    t = np.array([1.0, 0.0, 0.0])
    column = make()
    expected = float(column(z, t[:, None]))
    loss_fn = make()
    assert float(loss_fn(z, t)) == pytest.approx(expected)
    assert loss_fn.backward().shape == (3, 1)
    np.testing.assert_allclose(loss_fn.backward(), column.backward())


def test_backward_before_loss_is_an_error():
    with pytest.raises(RuntimeError, match="before the loss was computed"):
        gn.CrossEntropyLoss().backward()
