"""The static-buffer training step (``graph="auto"`` on the CPU): the same weights as the
eager loop, bit for bit; nothing allocated per step after the first; clear refusals."""
import tracemalloc

import numpy as np
import pytest

import gpunet as gn
from gpunet.training.engine.step import graph_mode, static_step_problem
from gpunet.training.engine.step_runner import StepRunner


def _data(n=330, features=(6, 7), classes=5, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.random((classes,) + features) * 200
    y = rng.integers(0, classes, n)
    X = np.clip(centers[y] + rng.normal(0, 30, (n,) + features), 0, 255)
    return (X if dtype == np.uint8 else X / 255).astype(dtype), y


def _model(classes=5, hidden=(24, 16), activation=gn.ReLU):
    gn.manual_seed(1)
    layers, width = [gn.Flatten()], 42
    for h in hidden:
        layers += [gn.Linear(width, h), activation()]
        width = h
    return gn.Sequential(*layers, gn.Linear(width, classes))


def _train(graph, make_opt, data, **kwargs):
    model = _model(activation=kwargs.pop("activation", gn.ReLU))
    opt = make_opt(model.parameters())
    history = gn.fit(model, gn.CrossEntropyLoss(), opt, data, seed=3, progress=False,
                     verbose=False, graph=graph, **kwargs)
    return model, opt, history


@pytest.mark.parametrize("make_opt", [
    lambda p: gn.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: gn.optim.AdamW(p, lr=1e-3),
], ids=["sgd", "adamw"])
@pytest.mark.parametrize("dtype,activation", [(np.uint8, gn.ReLU), (np.float32, gn.Tanh)])
def test_static_step_matches_the_eager_loop_bit_for_bit(make_opt, dtype, activation):
    data = _data(dtype=dtype)  # 330 = 10 x 32 + 10: the last batch is smaller
    val = _data(n=77, dtype=dtype, seed=1)
    runs = [_train(graph, make_opt, data, epochs=5, batch_size=32, activation=activation,
                   schedule=gn.schedules.CosineLR(5), val=val) for graph in ("off", "auto")]
    (eager, eager_opt, eager_hist), (static, static_opt, static_hist) = runs
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert eager_hist[key] == static_hist[key], key   # 55 steps, 5 validations
    assert eager_hist["train_loss"][-1] < eager_hist["train_loss"][0], "nothing learnt"
    for a, b in zip(eager.parameters(), static.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    assert eager_opt.step_count == static_opt.step_count == 55


def test_full_batch_gradient_descent_runs_the_static_step_unshuffled():
    data = _data(n=64)
    runs = [_train(g, lambda p: gn.optim.SGD(p, lr=0.05), data, epochs=3, batch_size=None)
            for g in ("off", "auto")]
    assert runs[0][2]["train_loss"] == runs[1][2]["train_loss"]


def _peak_of_an_epoch(batch, n=1100, features=(28, 28)):
    """Peak traced memory over a whole epoch of static steps, after a warm-up epoch."""
    X, y = _data(n=n, features=features)
    gn.manual_seed(1)
    model = gn.Sequential(gn.Flatten(), gn.Linear(784, 32), gn.ReLU(), gn.Linear(32, 5))
    opt = gn.optim.Adam(model.parameters(), lr=1e-3)
    runner = StepRunner(model, opt, X, y, batch, -(-n // batch))
    try:
        for measured in (False, True):
            runner.start_epoch()
            if measured:
                tracemalloc.start()
            for step in range(runner.count):
                runner.run(step)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        runner.close()


def test_a_static_step_allocates_nothing_after_the_first():
    """No array is made per step: the peak (Python's small objects only) stays far below one
    input batch of float32 images (the eager loop gathers one per step)."""
    for batch in (256, 512):
        peak = _peak_of_an_epoch(batch)
        assert peak < batch * 784 * 4 / 8, f"peak {peak} bytes over an epoch at batch {batch}"


def test_the_allocation_check_can_fail():
    """The same measurement sees the eager loop's per-step arrays (the gathered batch)."""
    X, y = _data(n=1100, features=(28, 28))
    model = gn.Sequential(gn.Flatten(), gn.Linear(784, 32), gn.ReLU(), gn.Linear(32, 5))
    opt = gn.optim.Adam(model.parameters(), lr=1e-3)
    loader = gn.DataLoader(X, y, 256, device="cpu")
    loss_fn = gn.CrossEntropyLoss()
    for xb, yb in loader:  # warm-up: the layers' buffers
        loss_fn(model(gn.datasets.to_float(xb)), yb)
    tracemalloc.start()
    try:
        for xb, yb in loader:
            loss_fn(model(gn.datasets.to_float(xb)), yb)
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak > 256 * 784 * 4 / 8


def _trained_runner(X, y, batch=32):
    model = _model() if X.shape[1:] == (6, 7) else gn.Sequential(
        gn.Flatten(), gn.Linear(784, 32), gn.ReLU(), gn.Linear(32, 5))
    opt = gn.optim.SGD(model.parameters(), lr=0.01)
    runner = StepRunner(model, opt, X, y, batch, -(-len(X) // batch))
    runner.start_epoch()
    for step in range(runner.count):
        runner.run(step)
    return model, runner


@pytest.mark.parametrize("batch_size", [1, 7, 64, 100, 4096])
def test_static_evaluation_equals_evaluate(batch_size):
    model, runner = _trained_runner(*_data())
    Xv, yv = _data(n=100, seed=2)
    loss_fn = gn.CrossEntropyLoss()
    expected = gn.evaluate(model, Xv, yv, loss_fn, batch_size=batch_size)
    for _ in range(2):  # the second time the cursor starts over
        assert runner.evaluate(Xv, yv, batch_size) == (expected.loss, expected.accuracy)
    assert model.training, "evaluation mode is left again"
    runner.close()
    assert runner.can_evaluate(loss_fn, Xv, yv)
    assert not runner.can_evaluate(gn.MSELoss(), Xv, yv)
    assert not runner.can_evaluate(loss_fn, Xv, yv.astype(np.float32))


def test_static_evaluation_allocates_nothing_after_the_first():
    """As for the training step: far below one batch of inputs (eager evaluation gathers
    one per batch)."""
    model, runner = _trained_runner(*_data(n=300, features=(28, 28)))
    Xv, yv = _data(n=300, features=(28, 28), seed=2)
    runner.evaluate(Xv, yv, 64)
    tracemalloc.start()
    try:
        runner.evaluate(Xv, yv, 64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        runner.close()
    assert peak < 64 * 784 * 4 / 8, f"peak {peak} bytes"


def test_graph_argument_is_checked_and_on_needs_the_gpu():
    X, y = _data()
    model, loss_fn = _model(), gn.CrossEntropyLoss()
    opt = gn.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(ValueError, match=r"graph must be one of \('auto', 'on', 'off'\), got 'yes'"):
        gn.fit(model, loss_fn, opt, (X, y), epochs=1, graph="yes", progress=False)
    with pytest.raises(ValueError, match="graph='on' needs the GPU"):
        gn.fit(model, loss_fn, opt, (X, y), epochs=1, graph="on", progress=False)


def test_what_the_static_step_cannot_run_is_named_and_runs_eagerly():
    X, y = _data()
    dropout = gn.Sequential(gn.Flatten(), gn.Linear(42, 8), gn.Dropout(0.5), gn.Linear(8, 5))
    assert "Dropout" in static_step_problem(dropout, gn.CrossEntropyLoss(), X, y)
    assert "MSELoss" in static_step_problem(_model(), gn.MSELoss(), X, y)
    assert "strided" in static_step_problem(_model(), gn.CrossEntropyLoss(), X[::2], y[::2])
    assert graph_mode("auto", dropout, gn.CrossEntropyLoss(), X, y)[0] == "eager"
    assert graph_mode("auto", _model(), gn.CrossEntropyLoss(), X, y)[0] == "static"
    opt = gn.optim.SGD(dropout.parameters(), lr=0.01)
    history = gn.fit(dropout, gn.CrossEntropyLoss(), opt, (X, y), epochs=2, batch_size=32,
                     progress=False, verbose=False)
    assert len(history) == 2


def test_a_diverging_static_run_names_the_epoch_and_step():
    X, y = _data()
    model = _model()
    opt = gn.optim.SGD(model.parameters(), lr=1e6)
    with pytest.raises(gn.NonFiniteLossError, match=r"epoch 1, step \d+ of 11"):
        gn.fit(model, gn.CrossEntropyLoss(), opt, (X, y), epochs=2, batch_size=32,
               progress=False, verbose=False)


def test_cli_graph_on_without_a_gpu_is_a_usage_error(tmp_path, capsys):
    from gpunet.cli import main

    code = main(["train", "--dataset", "xor", "--epochs", "1", "--graph", "on", "--device",
                 "cpu", "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--graph on: graph='on' needs the GPU" in err and "Traceback" not in err
    assert main(["train", "--dataset", "xor", "--epochs", "1", "--graph", "auto", "--device",
                 "cpu", "--out", str(tmp_path / "run2"), "--no-progress"]) == 0
