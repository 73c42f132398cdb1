"""fit / evaluate / predict, history, early stopping, schedules, divergence, resuming."""
import io
import json
import warnings

import numpy as np
import pytest

import gpunet as gn
from gpunet.training.loop.history import COLUMNS
from gpunet.training.loop.progress import ProgressBar


def _net(inputs=2, hidden=16, classes=2, dropout=0.0):
    gn.manual_seed(0)
    layers = [gn.Linear(inputs, hidden), gn.Tanh()]
    if dropout:
        layers.append(gn.Dropout(dropout))
    return gn.Sequential(*layers, gn.Linear(hidden, classes))


def _quiet_fit(model, optimizer, train, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("verbose", False)
    return gn.fit(model, gn.CrossEntropyLoss(), optimizer, train, **kwargs)


def test_fit_learns_xor_and_reports_history():
    X, y = gn.datasets.xor(200, noise=0.05, seed=1)
    model = _net()
    opt = gn.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    history = _quiet_fit(model, opt, (X, y), val=gn.datasets.xor(100, noise=0.05, seed=2),
                         epochs=25, batch_size=20)
    assert len(history) == 25
    assert history["epoch"] == list(range(1, 26))
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["val_accuracy"][-1] == 1.0
    assert all(r["seconds"] > 0 and r["samples_per_s"] > 0 for r in history)
    assert gn.evaluate(model, X, y).accuracy == 1.0


def test_fit_regression_has_no_accuracy():
    X, y = gn.datasets.sine(200, seed=0)
    gn.manual_seed(0)
    model = gn.Sequential(gn.Linear(1, 32), gn.Tanh(), gn.Linear(32, 1))
    opt = gn.optim.Adam(model.parameters(), lr=0.01)
    history = gn.fit(model, gn.MSELoss(), opt, (X, y), val_split=0.2, epochs=30,
                     batch_size=16, progress=False, verbose=False)
    assert history["train_accuracy"] == history["val_accuracy"] == [None] * 30
    assert history["val_loss"][-1] < 0.1 * history["val_loss"][0]


def test_history_is_json_and_csv_friendly(tmp_path):
    model = _net()
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    history = _quiet_fit(model, opt, gn.datasets.xor(40, seed=0), epochs=3, batch_size=8)
    assert history["val_loss"] == [None] * 3  # no validation set
    records = json.loads(history.to_json(tmp_path / "h.json"))
    assert records == json.loads((tmp_path / "h.json").read_text())
    assert [r["train_loss"] for r in records] == history["train_loss"]
    lines = history.to_csv(tmp_path / "h.csv").splitlines()
    assert lines[0].split(",") == list(COLUMNS)
    assert len(lines) == 4 and (tmp_path / "h.csv").read_text().splitlines() == lines
    with pytest.raises(KeyError, match="unknown history column"):
        history["nope"]


def test_history_history_is_keras_dict_of_lists():
    model = _net()
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    history = _quiet_fit(model, opt, gn.datasets.xor(40, seed=0), epochs=3, batch_size=8,
                         val=gn.datasets.xor(20, seed=1))
    keras = history.history
    assert list(keras) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert keras["loss"] == history["train_loss"] and keras["val_accuracy"] == \
        history["val_accuracy"] and len(keras["accuracy"]) == 3
    model = _net(classes=1)                  # regression: no accuracy, no validation
    history = gn.fit(model, gn.MSELoss(), gn.optim.SGD(model.parameters(), lr=0.1),
                     (np.ones((8, 2), np.float32), np.ones(8, np.float32)), epochs=2,
                     progress=False, verbose=False)
    assert list(history.history) == ["loss"] and len(history.history["loss"]) == 2


def test_train_loss_is_the_sample_weighted_mean_of_the_steps():
    X, y = gn.datasets.spirals(50, seed=0)  # 50 = 3 batches of 16 + one of 2
    model = _net()
    opt = gn.optim.SGD(model.parameters(), lr=0.0)  # weights stay put
    history = _quiet_fit(model, opt, (X, y), epochs=1, batch_size=16)
    expected = gn.evaluate(model, X, y, gn.CrossEntropyLoss())
    assert history["train_loss"][0] == pytest.approx(expected.loss, rel=1e-5)
    assert history["train_accuracy"][0] == pytest.approx(expected.accuracy)


def test_val_split_holds_out_a_fixed_fraction():
    X, y = gn.datasets.spirals(100, seed=0)
    model = _net()
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    history = _quiet_fit(model, opt, (X, y), val_split=0.25, epochs=1, batch_size=None)
    # full batch: samples/s * seconds of training covers the 75 training samples only
    assert history["val_loss"][0] is not None
    with pytest.raises(ValueError, match="either val=.* or val_split"):
        _quiet_fit(model, opt, (X, y), val=(X, y), val_split=0.1, epochs=1)
    with pytest.raises(ValueError, match=r"val_split must be in \[0, 1\)"):
        _quiet_fit(model, opt, (X, y), val_split=1.0, epochs=1)
    with pytest.raises(ValueError, match="leaves 0 for validation"):
        _quiet_fit(model, opt, (X, y), val_split=0.001, epochs=1)


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"patience": 0}, "patience must be a positive integer"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_arguments(kwargs, message):
    model = _net()
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises((ValueError, TypeError), match=message):
        _quiet_fit(model, opt, gn.datasets.xor(), **{"epochs": 1, **kwargs})
    with pytest.raises(TypeError, match=r"train must be a pair \(X, y\)"):
        _quiet_fit(model, opt, gn.datasets.xor()[0], epochs=1)


def test_early_stopping_restores_the_best_weights(tmp_path):
    X, y = gn.datasets.spirals(200, seed=0)
    val = (X[:50], 1 - y[:50])  # labels flipped: fitting the training set hurts validation
    model = _net(hidden=32)
    opt = gn.optim.Adam(model.parameters(), lr=0.01)
    path = tmp_path / "run.npz"
    history = _quiet_fit(model, opt, (X, y), val=val, epochs=50, batch_size=20, patience=3,
                         checkpoint=path)
    losses = history["val_loss"]
    best = int(np.argmin(losses))
    assert len(history) == best + 1 + 3 < 50  # stopped `patience` epochs after the best
    final = gn.evaluate(model, *val, gn.CrossEntropyLoss())
    assert final.loss == pytest.approx(losses[best], rel=1e-5)
    saved = gn.load(path)  # the checkpoint holds the weights fit returned
    assert gn.evaluate(saved.model, *val, gn.CrossEntropyLoss()).loss == \
        pytest.approx(losses[best], rel=1e-5)


def test_resume_keeps_the_early_stopping_state(tmp_path):
    X, y = gn.datasets.spirals(200, seed=0)
    val = (X[:50], 1 - y[:50])

    def run(epochs, **kwargs):
        model = _net(hidden=32)
        opt = gn.optim.Adam(model.parameters(), lr=0.01)
        history = _quiet_fit(model, opt, (X, y), val=val, epochs=epochs, batch_size=20,
                             patience=3, seed=1, **kwargs)
        return model, history

    straight, straight_history = run(50)
    stopped = len(straight_history)
    path = tmp_path / "run.npz"
    run(stopped - 1, checkpoint=path)  # interrupted one epoch before the stop
    assert gn.load(path).best_state is not None  # the best epoch lies behind
    resumed, resumed_history = run(50, resume=path)
    assert len(resumed_history) == stopped
    for name, value in straight.state_dict().items():
        np.testing.assert_allclose(resumed.state_dict()[name], value, rtol=1e-5, atol=1e-7)


def test_schedules():
    step = gn.schedules.StepLR(2, gamma=0.5)
    assert [step(1.0, e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    cosine = gn.schedules.CosineLR(4, min_lr=0.1)
    assert cosine(1.0, 0) == 1.0
    assert cosine(1.0, 2) == pytest.approx(0.55)
    assert cosine(1.0, 4) == cosine(1.0, 9) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="step_size must be a positive integer"):
        gn.schedules.StepLR(0)
    with pytest.raises(ValueError, match="gamma"):
        gn.schedules.StepLR(1, gamma=1.5)


def test_fit_applies_the_schedule_per_epoch():
    model = _net()
    opt = gn.optim.SGD(model.parameters(), lr=0.4)
    schedule = gn.schedules.CosineLR(5)
    history = _quiet_fit(model, opt, gn.datasets.xor(40, seed=0), epochs=5, batch_size=8,
                         schedule=schedule)
    assert history["lr"] == pytest.approx([schedule(0.4, e) for e in range(5)])
    assert opt.lr == history["lr"][-1]


class _LossTurningNaN(gn.CrossEntropyLoss):
    """Cross-entropy whose ``bad_call``-th call returns NaN."""

    def __init__(self, bad_call):
        super().__init__()
        self.calls, self.bad_call = 0, bad_call

    def forward(self, backend, logits, labels, grad):
        self.calls += 1
        loss = super().forward(backend, logits, labels, grad)
        return loss * np.nan if self.calls == self.bad_call else loss


def test_non_finite_loss_names_epoch_and_step_and_keeps_the_checkpoint(tmp_path):
    X, y = gn.datasets.xor(40, seed=0)  # 4 steps per epoch of 10
    model = _net()
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "run.npz"
    with pytest.raises(gn.NonFiniteLossError,
                       match=r"nan at epoch 3, step 2 of 4.*keeps epoch 2") as info:
        gn.fit(model, _LossTurningNaN(bad_call=10), opt, (X, y), epochs=5, batch_size=10,
               checkpoint=path, progress=False, verbose=False)
    assert (info.value.epoch, info.value.step) == (3, 2)
    kept = gn.load(path)
    assert kept.epoch == 2 and len(kept.meta["fit"]["history"]) == 2
    assert all(np.isfinite(v).all() for v in kept.model.state_dict().values())


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    X, y = gn.datasets.spirals(120, seed=0)

    def run(epochs, resume=None, checkpoint=None):
        model = _net(dropout=0.2)
        opt = gn.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
        history = _quiet_fit(model, opt, (X, y), val_split=0.2, epochs=epochs,
                             batch_size=16, schedule=gn.schedules.CosineLR(4), seed=5,
                             checkpoint=checkpoint, resume=resume)
        return model, history

    straight, straight_history = run(4)
    path = tmp_path / "half.npz"
    run(2, checkpoint=path)
    gn.manual_seed(123)  # resuming does not depend on the global seed in between
    resumed, resumed_history = run(4, resume=path)
    assert len(resumed_history) == 4
    for column in ("train_loss", "val_loss", "lr", "train_accuracy"):
        np.testing.assert_allclose(resumed_history[column], straight_history[column],
                                   rtol=1e-6)
    for name, value in straight.state_dict().items():
        np.testing.assert_allclose(resumed.state_dict()[name], value, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="already trained 2 epochs"):
        run(2, resume=path)


def test_uint8_images_are_scaled_like_to_float():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 3, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, size=30)
    gn.manual_seed(0)
    model = gn.Sequential(gn.Flatten(), gn.Linear(9, 2))
    as_float = gn.datasets.to_float(images)
    np.testing.assert_allclose(gn.predict(model, images, batch_size=7),
                               gn.predict(model, as_float), rtol=1e-6)
    loss_fn = gn.CrossEntropyLoss()
    assert gn.evaluate(model, images, labels, loss_fn, batch_size=4) == \
        pytest.approx(gn.evaluate(model, as_float, labels, loss_fn))
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    history = _quiet_fit(model, opt, (images, labels), epochs=2, batch_size=8)
    assert np.isfinite(history["train_loss"]).all()


def test_evaluate_and_predict_use_eval_mode_and_restore_it():
    X, y = gn.datasets.spirals(64, seed=0)
    model = _net(dropout=0.5)
    model.train()
    out = gn.predict(model, X, batch_size=10)
    assert model.training  # restored
    model.eval()
    np.testing.assert_allclose(out, model(X), rtol=1e-6)  # dropout was off, batching moot
    accuracy = float((gn.to_numpy(out).argmax(axis=1) == y).mean())
    assert gn.evaluate(model, X, y, batch_size=7) == (None, pytest.approx(accuracy))
    assert not model.training
    regression = gn.Sequential(gn.Linear(1, 1))
    Xs, ys = gn.datasets.sine(20, seed=0)
    result = gn.evaluate(regression, Xs, ys, gn.MSELoss())
    assert result.accuracy is None
    assert result.loss == pytest.approx(float(((regression(Xs) - ys) ** 2).mean()), rel=1e-5)


class _CountingOps(type(gn.get_backend("cpu").ops)):
    reads = 0

    def check_errors(self):
        type(self).reads += 1


def test_losses_are_read_once_per_epoch_without_progress_bar():
    backend = gn.get_backend("cpu")
    original = backend.ops
    backend.ops = _CountingOps()
    try:
        model = _net()
        opt = gn.optim.SGD(model.parameters(), lr=0.1)
        _quiet_fit(model, opt, gn.datasets.xor(64, seed=0), epochs=3, batch_size=4)
    finally:
        backend.ops = original
    # 16 steps per epoch, one host read each epoch, plus the label check before training
    assert _CountingOps.reads == 1 + 3


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_draws_on_terminals_only():
    tty = _Terminal()
    bar = ProgressBar(10, "epoch 1/2 ", stream=tty, interval=0)
    assert bar.due()
    bar.update(5, loss="0.5000")
    bar.close()
    text = tty.getvalue()
    assert "epoch 1/2 [" in text and "5/10" in text and "loss 0.5000" in text
    assert text.endswith("\r")
    log = io.StringIO()
    bar = ProgressBar(10, stream=log, interval=0)
    bar.update(5, loss="0.5")
    bar.close()
    assert not bar.due() and log.getvalue() == ""


def test_verbose_prints_one_line_per_epoch(capsys):
    model = _net()
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    gn.fit(model, gn.CrossEntropyLoss(), opt, gn.datasets.xor(16, seed=0), epochs=2,
           batch_size=4, progress=False, on_epoch_end=seen.append)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2")
    assert [r["epoch"] for r in seen] == [1, 2]


def test_empty_data_is_an_error():
    model = _net()
    empty_X, empty_y = np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    with pytest.raises(ValueError, match="got 0 samples"):
        gn.evaluate(model, empty_X, empty_y, gn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="got 0 samples"):
        gn.predict(model, empty_X)


def test_labels_are_checked_against_the_outputs_before_training():
    X, y = gn.datasets.xor(40, seed=0)
    model = _net()  # 2 outputs
    before = {k: v.copy() for k, v in model.state_dict().items()}
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    bad = y.copy()
    bad[-1] = 2  # in the last batch: a per-batch check would only see it after 3 steps
    with pytest.raises(ValueError, match=r"train labels: label 2 at index 39 .*\[0, 2\)"):
        _quiet_fit(model, opt, (X, bad), epochs=1, batch_size=10)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])  # no step was taken
    with pytest.raises(ValueError, match="val labels: label -1 at index 0"):
        _quiet_fit(model, opt, (X, y), val=(X[:5], np.array([-1, 0, 1, 0, 1])), epochs=1)
    with pytest.raises(ValueError, match="y: label 2 at index 39"):
        gn.evaluate(model, X, bad, gn.NLLLoss())


def test_diverging_run_raises_without_numpy_warnings():
    X, y = gn.datasets.spirals(200, seed=0)
    gn.manual_seed(0)
    model = gn.Sequential(gn.Linear(2, 64), gn.ReLU(), gn.Linear(64, 64), gn.ReLU(),
                          gn.Linear(64, 3))
    opt = gn.optim.SGD(model.parameters(), lr=1e4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would fail the test
        with pytest.raises(gn.NonFiniteLossError, match="Try a lower learning rate"):
            _quiet_fit(model, opt, (X, y), epochs=5, batch_size=20)


def _uint8_quadrants(n, seed):
    """4x4 uint8 images of 3 classes: faint noise plus a bright 2x2 block in quadrant
    ``label`` (0: top left, 1: top right, 2: bottom left)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 60, size=(n, 4, 4)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        images[i, 2 * row:2 * row + 2, 2 * col:2 * col + 2] += 180
    return images, labels


def _device_model(backend):
    gn.manual_seed(0)
    return gn.Sequential(gn.Flatten(), gn.Linear(16, 16), gn.ReLU(),
                         gn.Linear(16, 3)).to(backend)


def test_fit_on_the_backend_with_device_uint8_images(tmp_path, backend):
    X, y = _uint8_quadrants(300, seed=0)
    X_val, y_val = _uint8_quadrants(60, seed=1)
    val = (backend.asarray(X_val), backend.asarray(y_val))
    model = _device_model(backend)
    opt = gn.optim.Adam(model.parameters(), lr=0.02)
    path = tmp_path / "run.npz"
    history = _quiet_fit(model, opt, (backend.asarray(X), backend.asarray(y)), val=val,
                         epochs=6, batch_size=32, checkpoint=path, seed=0)
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["val_accuracy"][-1] >= 0.95
    loss_fn = gn.CrossEntropyLoss()
    on_device = gn.evaluate(model, *val, loss_fn)
    assert on_device.loss == pytest.approx(history["val_loss"][-1], rel=1e-5)

    outputs = gn.predict(model, val[0], batch_size=7)
    assert type(outputs) is type(val[0])  # stays on the model's device
    predicted = gn.to_numpy(outputs).argmax(axis=1)
    assert float((predicted == y_val).mean()) == pytest.approx(on_device.accuracy)

    saved = gn.load(path)  # written on `backend`, read on the CPU
    assert saved.epoch == 6
    on_cpu = gn.evaluate(saved.model, X_val, y_val, loss_fn)
    assert on_cpu.loss == pytest.approx(on_device.loss, rel=1e-4)
    assert on_cpu.accuracy == pytest.approx(on_device.accuracy, abs=1 / 60)  # ties may flip
    with pytest.raises(ValueError, match="label 3 at index 0"):
        gn.evaluate(model, val[0][:4], backend.asarray(np.array([3, 0, 1, 2])), loss_fn)


def test_early_stopping_and_nan_stop_on_the_backend(tmp_path, backend):
    X, y = _uint8_quadrants(200, seed=0)
    X, y = backend.asarray(X), backend.asarray(y)
    val = (X[:50], (y[:50] + 1) % 3)  # wrong labels: fitting the training set hurts them
    model = _device_model(backend)
    opt = gn.optim.Adam(model.parameters(), lr=0.02)
    path = tmp_path / "run.npz"
    history = _quiet_fit(model, opt, (X, y), val=val, epochs=30, batch_size=25,
                         patience=2, checkpoint=path)
    best = int(np.argmin(history["val_loss"]))
    assert len(history) == best + 1 + 2 < 30
    best_loss = history["val_loss"][best]
    assert gn.evaluate(model, *val, gn.CrossEntropyLoss()).loss == \
        pytest.approx(best_loss, rel=1e-5)
    saved = gn.load(path)
    cpu_val = (gn.to_numpy(val[0]), gn.to_numpy(val[1]))
    assert gn.evaluate(saved.model, *cpu_val, gn.CrossEntropyLoss()).loss == \
        pytest.approx(best_loss, rel=1e-4)

    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(gn.NonFiniteLossError, match=r"nan at epoch 2, step 3 of 8") as info:
        gn.fit(model, _LossTurningNaN(bad_call=11), opt, (X, y), epochs=3, batch_size=25,
               progress=False, verbose=False)
    assert (info.value.epoch, info.value.step) == (2, 3)


def test_evaluate_and_predict_check_batch_size_like_the_loader():
    model = gn.Sequential(gn.Linear(2, 2))
    X, y = np.zeros((4, 2), np.float32), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="batch_size must be a positive integer or None"):
        gn.evaluate(model, X, y, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be a positive integer or None"):
        gn.predict(model, X, batch_size=2.5)
