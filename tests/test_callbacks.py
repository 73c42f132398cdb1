"""fit's callbacks steer: one that returns True or raises gn.StopTraining ends training after
the current epoch; any other exception keeps the History (on the exception), the checkpoint of
the last finished epoch and what the other callbacks write; a per-step hook runs between the
steps, eager or static."""
import csv

import numpy as np
import pytest

import gpunet as gn
from gpunet.training.run_files.run_output import MetricsWriter


def _setup(backend, n=60):
    gn.manual_seed(0)
    model = gn.Sequential(gn.Linear(4, 8), gn.ReLU(), gn.Linear(8, 3)).to(backend.name)
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 4)).astype(np.float32)
    y = rng.integers(0, 3, n)
    return model, opt, (X, y)


def _fit(model, opt, data, **kwargs):
    kwargs.setdefault("epochs", 6)
    return gn.fit(model, gn.CrossEntropyLoss(), opt, data, batch_size=16, progress=False,
                  verbose=False, **kwargs)


@pytest.mark.parametrize("graph", ["auto", "off"])
def test_returning_true_stops_after_that_epoch(backend, graph, tmp_path):
    model, opt, data = _setup(backend)
    path = tmp_path / "run.npz"
    history = _fit(model, opt, data, graph=graph, checkpoint=path,
                   on_epoch_end=lambda record: record["epoch"] == 3)
    assert history["epoch"] == [1, 2, 3]
    assert opt.step_count == 3 * 4
    assert gn.load(path).epoch == 3


def test_stop_training_raised_stops_and_early_stopping_still_restores(backend, capsys):
    model, opt, data = _setup(backend)

    def stop_at_four(record):
        if record["epoch"] == 4:
            raise gn.StopTraining

    history = gn.fit(model, gn.CrossEntropyLoss(), opt, data, batch_size=16, epochs=6,
                     progress=False, patience=10, on_epoch_end=stop_at_four)
    assert len(history) == 4
    assert "stopped by a callback after epoch 4" in capsys.readouterr().out
    assert issubclass(gn.StopTraining, Exception)


@pytest.mark.parametrize("graph", ["auto", "off"])
def test_a_failing_callback_keeps_history_checkpoint_and_metrics(backend, graph, tmp_path):
    model, opt, data = _setup(backend)
    path = tmp_path / "run.npz"
    metrics = MetricsWriter(str(tmp_path), {"note": "test"}, backend.name)

    def fails_at_two(record):
        if record["epoch"] == 2:
            raise KeyError("a typo in the user's callback")

    with pytest.raises(KeyError, match="a typo") as info:
        _fit(model, opt, data, graph=graph, checkpoint=path,
             on_epoch_end=[fails_at_two, metrics.epoch_done])
    history = info.value.history
    assert history["epoch"] == [1, 2]
    assert "History of the 2 finished epochs is this exception's .history" in \
        "\n".join(info.value.__notes__)
    assert gn.load(path).epoch == 2
    with open(tmp_path / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]


def test_every_epoch_callback_runs_and_the_first_error_is_raised(backend):
    model, opt, data = _setup(backend)
    calls = []

    def first(record):
        calls.append("first")
        raise ValueError("first")

    def second(record):
        calls.append("second")
        raise RuntimeError("second")

    with pytest.raises(ValueError, match="first") as info:
        _fit(model, opt, data, on_epoch_end=[first, second, lambda r: calls.append("third")])
    assert calls == ["first", "second", "third"]
    assert any("RuntimeError: second" in note for note in info.value.__notes__)


@pytest.mark.parametrize("graph", ["auto", "off"])
def test_step_callback_sees_every_step_and_its_loss(backend, graph):
    model, opt, data = _setup(backend)
    seen = []
    history = _fit(model, opt, data, graph=graph, epochs=2,
                   on_step_end=lambda epoch, step, loss: seen.append((epoch, step, float(loss))))
    assert [(e, s) for e, s, _ in seen] == [(e, s) for e in (1, 2) for s in (1, 2, 3, 4)]
    rows = np.array([16, 16, 16, 12])
    for epoch in (1, 2):
        losses = np.array([loss for e, _, loss in seen if e == epoch])
        assert history["train_loss"][epoch - 1] == pytest.approx(losses @ rows / 60, rel=1e-6)


@pytest.mark.parametrize("graph", ["auto", "off"])
def test_a_step_callback_asking_to_stop_finishes_the_epoch(backend, graph):
    model, opt, data = _setup(backend)
    history = _fit(model, opt, data, graph=graph,
                   on_step_end=lambda epoch, step, loss: epoch == 2 and step == 1)
    assert len(history) == 2 and opt.step_count == 8


@pytest.mark.parametrize("graph", ["auto", "off"])
def test_a_step_callback_sets_the_learning_rate_of_the_next_step(backend, graph):
    model, opt, data = _setup(backend)
    after_first = {}

    def freeze(epoch, step, loss):
        if not after_first:
            after_first.update(model.state_dict())
        opt.lr = 0.0

    _fit(model, opt, data, graph=graph, epochs=2, on_step_end=freeze)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, after_first[name], err_msg=name)


def test_a_failing_step_callback_carries_the_history(backend):
    model, opt, data = _setup(backend)

    def fails(epoch, step, loss):
        if (epoch, step) == (3, 2):
            raise ZeroDivisionError("user bug")

    with pytest.raises(ZeroDivisionError) as info:
        _fit(model, opt, data, on_step_end=fails)
    assert len(info.value.history) == 2
    assert "on_step_end raised at epoch 3, step 2" in info.value.__notes__[0]


def test_callbacks_must_be_functions(backend):
    model, opt, data = _setup(backend)
    with pytest.raises(TypeError, match="on_step_end must be a function or a list of "
                                        "functions, got int"):
        _fit(model, opt, data, on_step_end=3)
