"""Weights in losses and samples: CrossEntropyLoss(weight=..., label_smoothing=...) equal to
torch's to 1e-6 on the CPU and in the fused GPU kernel (the backend fixture's gpu case), sample
weights in CrossEntropyLoss, BCEWithLogitsLoss and MSELoss, and fit(sample_weight=...)."""
import contextlib
import math

import numpy as np
import pytest

import gpunet as gn
from gpunet.ops.numpy_ops import NumpyOps


def _torch():
    return pytest.importorskip("torch", reason="PyTorch is the reference; not installed")


@contextlib.contextmanager
def _fused_only(backend):
    """On the GPU the reference cross-entropy raises inside: the kernel must serve."""
    if backend.name != "gpu":
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        def refuse(self, *args, **kwargs):
            raise AssertionError("NumpyOps.softmax_cross_entropy ran where the fused kernel "
                                 "was expected")
        mp.setattr(NumpyOps, "softmax_cross_entropy", refuse)
        yield


def _torch_reference(torch, logits, labels, weight, sample_weight, smoothing):
    z = torch.tensor(logits.astype(np.float64), requires_grad=True)
    w = None if weight is None else torch.tensor(weight.astype(np.float64))
    y = torch.tensor(labels)
    if sample_weight is None:
        loss = torch.nn.functional.cross_entropy(z, y, weight=w, label_smoothing=smoothing)
    else:   # each row's weighted loss times its sample weight, over the sum of s_i w[y_i]
        s = torch.tensor(sample_weight.astype(np.float64))
        rows = torch.nn.functional.cross_entropy(z, y, weight=w, label_smoothing=smoothing,
                                                 reduction="none")
        loss = (rows * s).sum() / (s * (w[y] if w is not None else 1.0)).sum()
    loss.backward()
    return loss.item(), z.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch,classes", [(1, 3), (37, 10), (1000, 7), (70, 45)])
@pytest.mark.parametrize("weighted,sampled,smoothing", [
    (True, False, 0.0), (False, False, 0.1), (True, False, 0.25), (False, True, 0.0),
    (True, True, 0.1)])
def test_cross_entropy_equals_torch(backend, rng, dtype, batch, classes, weighted, sampled,
                                    smoothing):
    torch = _torch()
    logits = (rng.standard_normal((batch, classes)) * 3).astype(dtype)
    labels = rng.integers(0, classes, batch)
    weight = rng.uniform(0.1, 4.0, classes) if weighted else None
    sample = rng.uniform(0.0, 2.0, batch).astype(dtype) if sampled else None
    want_loss, want_grad = _torch_reference(torch, logits, labels, weight, sample, smoothing)
    loss_fn = gn.CrossEntropyLoss(weight=weight, label_smoothing=smoothing)
    args = [backend.asarray(logits), backend.asarray(labels)]
    if sampled:
        args.append(backend.asarray(sample))
    with _fused_only(backend if dtype == np.float32 else gn.get_backend("cpu")):
        loss = loss_fn(*args)
        grad = gn.to_numpy(loss_fn.backward())
    assert float(loss) == pytest.approx(want_loss, rel=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-6 * np.abs(want_grad).max())
    assert int(loss_fn.last_correct) == int(np.sum(logits.argmax(1) == labels))


def test_weighted_cross_entropy_passes_gradcheck(rng):
    loss_fn = gn.CrossEntropyLoss(weight=[0.5, 2.0, 1.0, 3.0], label_smoothing=0.2)
    assert gn.gradcheck(loss_fn, rng.standard_normal((6, 4)), rng.integers(0, 4, 6))
    assert repr(loss_fn) == "CrossEntropyLoss(weight=[0.5, 2.0, 1.0, 3.0], label_smoothing=0.2)"


def test_class_weights_and_smoothing_are_checked(rng):
    with pytest.raises(ValueError, match="one weight per class"):
        gn.CrossEntropyLoss(weight=[[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"finite numbers >= 0, got \[1.0, -1.0\]"):
        gn.CrossEntropyLoss(weight=[1.0, -1.0])
    with pytest.raises(ValueError, match="label_smoothing"):
        gn.CrossEntropyLoss(label_smoothing=1.5)
    loss_fn = gn.CrossEntropyLoss(weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="has 2 class weights, the logits have 3 classes"):
        loss_fn(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(4, np.int64))


def _elementwise_reference(losses, grads, sample_weight):
    """The sample-weighted mean of per-element losses and its gradient by hand."""
    rows = len(losses)
    per_row = losses.reshape(rows, -1).mean(axis=1)
    total = sample_weight.sum()
    width = losses.size // rows
    return (per_row @ sample_weight) / total, grads * (sample_weight / (total * width))[:, None]


@pytest.mark.parametrize("outputs", [1, 3])
def test_mse_and_bce_take_sample_weights(backend, rng, outputs):
    pred = rng.standard_normal((9, outputs))
    target = rng.integers(0, 2, (9, outputs)).astype(np.float64)
    sample = rng.uniform(0, 3, 9)
    mse = gn.MSELoss()
    loss = mse(backend.asarray(pred), backend.asarray(target), backend.asarray(sample))
    want, want_grad = _elementwise_reference((pred - target) ** 2, 2 * (pred - target), sample)
    assert float(loss) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(gn.to_numpy(mse.backward()), want_grad, rtol=1e-12)
    bce = gn.BCEWithLogitsLoss()
    loss = bce(backend.asarray(pred), backend.asarray(target), backend.asarray(sample))
    losses = np.maximum(pred, 0) - pred * target + np.log1p(np.exp(-np.abs(pred)))
    want, want_grad = _elementwise_reference(losses, 1 / (1 + np.exp(-pred)) - target, sample)
    assert float(loss) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(gn.to_numpy(bce.backward()), want_grad, rtol=1e-12)


def test_unit_weights_change_nothing_and_integer_weights_repeat_rows(rng):
    logits = rng.standard_normal((12, 5))
    labels = rng.integers(0, 5, 12)
    loss_fn = gn.CrossEntropyLoss()
    plain = float(loss_fn(logits, labels))
    assert float(loss_fn(logits, labels, np.ones(12))) == pytest.approx(plain, rel=1e-14)
    counts = rng.integers(0, 4, 12)
    counts[0] = 1
    weighted = float(loss_fn(logits, labels, counts.astype(np.float64)))
    grad = loss_fn.backward().copy()
    repeated = float(loss_fn(logits.repeat(counts, axis=0), labels.repeat(counts)))
    assert weighted == pytest.approx(repeated, rel=1e-14)
    present = counts > 0
    starts = (np.cumsum(counts) - counts)[present]   # each kept row's first copy
    summed = np.add.reduceat(loss_fn.backward(), starts, axis=0)
    np.testing.assert_allclose(grad[present], summed, rtol=1e-12, atol=1e-15)
    assert not grad[~present].any()


def test_sample_weights_are_checked(rng):
    logits, labels = rng.standard_normal((4, 3)), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"sample_weight of shape \(4,\) .* got \(3,\)"):
        gn.CrossEntropyLoss()(logits, labels, np.ones(3))
    with pytest.raises(TypeError, match="NLLLoss does not take sample_weight"):
        gn.NLLLoss()(logits, labels, np.ones(4))


# -- fit(sample_weight=...) and weighted losses in fit -------------------------------------
def _data(n=90, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.standard_normal((n, 4)) + 2 * np.eye(4)[y]).astype(np.float32)
    return X, y


def _model(backend):
    gn.manual_seed(0)
    return gn.Sequential(gn.Linear(4, 16), gn.Tanh(), gn.Linear(16, 3)).to(backend.name)


def _train(backend, loss_fn, data, epochs=5, **kwargs):
    model = _model(backend)
    opt = gn.optim.SGD(model.parameters(), lr=0.3)
    history = gn.fit(model, loss_fn, opt, data, epochs=epochs, batch_size=None,
                     progress=False, verbose=False, **kwargs)
    return model, history


def test_zero_weights_train_as_if_the_samples_were_absent(backend):
    X, y = _data()
    keep = np.arange(len(X)) % 3 != 0
    weighted, _ = _train(backend, gn.CrossEntropyLoss(), (X, y),
                         sample_weight=keep.astype(np.float32))
    subset, _ = _train(backend, gn.CrossEntropyLoss(), (X[keep], y[keep]))
    for name, value in subset.state_dict().items():
        np.testing.assert_allclose(weighted.state_dict()[name], value, rtol=2e-5, atol=1e-6)


def test_fit_sample_weight_equals_the_loop_by_hand(backend):
    X, y = _data()
    w = np.random.default_rng(1).uniform(0, 2, len(X)).astype(np.float32)
    fitted, history = _train(backend, gn.CrossEntropyLoss(), (X, y), epochs=3, sample_weight=w,
                             graph="auto")
    model = _model(backend)
    opt = gn.optim.SGD(model.parameters(), lr=0.3)
    loss_fn = gn.CrossEntropyLoss()
    losses = []
    for _ in range(3):
        losses.append(float(loss_fn(model(backend.asarray(X)), backend.asarray(y),
                                    backend.asarray(w))))
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(fitted.state_dict()[name], value, rtol=1e-6, atol=1e-7)
    assert history["train_loss"] == pytest.approx(losses, rel=1e-6)


def test_fit_sample_weight_with_batches_and_a_validation_split(backend):
    X, y = _data(200)
    w = np.where(y == 2, 5.0, 1.0)
    model = _model(backend)
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    history = gn.fit(model, gn.CrossEntropyLoss(), opt, (X, y), val_split=0.2, epochs=3,
                     batch_size=32, sample_weight=w, seed=0, progress=False, verbose=False)
    assert len(history) == 3 and history["val_accuracy"][-1] is not None
    assert opt.step_count == 3 * 5       # 160 training rows in batches of 32


@pytest.mark.parametrize("weight, message, error", [
    (np.ones(5), r"one weight per training sample, shape \(90,\), got \(5,\)", ValueError),
    (-np.ones(90), r"must be >= 0, got -1.0 at index 0", ValueError),
    (np.zeros(90), "must not be all zero", ValueError),
    (np.full(90, np.nan), "sample_weight hold nan at row 0", ValueError),
])
def test_fit_checks_sample_weight(backend, weight, message, error):
    with pytest.raises(error, match=message):
        _train(backend, gn.CrossEntropyLoss(), _data(), sample_weight=weight)


def test_fit_sample_weight_needs_a_loss_that_takes_them_and_no_graph_on(backend):
    X, y = _data()
    with pytest.raises(TypeError, match="NLLLoss does not take sample weights"):
        _train(backend, gn.NLLLoss(), (X, y), sample_weight=np.ones(len(X)))
    if backend.name == "gpu":
        with pytest.raises(ValueError, match="graph='on' cannot run sample weights"):
            _train(backend, gn.CrossEntropyLoss(), (X, y), sample_weight=np.ones(len(X)),
                   graph="on")


def test_weighted_smoothed_loss_runs_the_static_step_like_the_eager_loop(backend, monkeypatch):
    if backend.name == "gpu":  # graph="auto" replays on the tiled GEMM: the eager run too
        monkeypatch.setattr(backend.ops, "gemm_routes", ((math.inf, "tiled"),))
    X, y = _data(150)
    runs = {}
    for graph in ("off", "auto"):
        loss_fn = gn.CrossEntropyLoss(weight=[1.0, 3.0, 0.5], label_smoothing=0.1)
        model = _model(backend)
        opt = gn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        history = gn.fit(model, loss_fn, opt, (X, y), val=_data(40, seed=5), epochs=3,
                         batch_size=32, seed=0, graph=graph, progress=False, verbose=False)
        runs[graph] = model.state_dict(), history
    for name, value in runs["off"][0].items():
        np.testing.assert_array_equal(runs["auto"][0][name], value, err_msg=name)
    assert runs["off"][1]["val_loss"] == runs["auto"][1]["val_loss"]
    assert runs["off"][1]["train_loss"] == runs["auto"][1]["train_loss"]


def test_class_weights_move_predictions_towards_the_heavy_class():
    backend = gn.get_backend("cpu")
    X, y = _data(300)
    counts = []
    for weight in (None, [1.0, 1.0, 8.0]):
        model, _ = _train(backend, gn.CrossEntropyLoss(weight=weight), (X, y), epochs=30)
        counts.append(int((gn.predict(model, X).argmax(1) == 2).sum()))
    assert counts[1] > counts[0]
