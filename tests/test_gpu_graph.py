"""Graph-captured training on the GPU (``fit(graph="on")``): the same numbers as the eager
loop on the same GEMM route, schedules that act between replays, label errors, resume."""
import math
import re

import numpy as np
import pytest

import gpunet as gn

pytestmark = pytest.mark.gpu
TILED = ((math.inf, "tiled"),)


@pytest.fixture
def tiled_ops():
    """The GPU ops with every GEMM on the tiled kernel (what the captured step uses), so the
    eager loop computes the same products; the routes are restored afterwards."""
    ops = gn.get_backend("gpu").ops
    saved, ops.gemm_routes = ops.gemm_routes, TILED
    yield ops
    ops.gemm_routes = saved


def _data(n=1590, classes=10, seed=0):
    """uint8 images; 1590 = 49 x 32 + 22: each epoch ends with a smaller batch."""
    rng = np.random.default_rng(seed)
    centers = rng.integers(0, 256, (classes, 8, 8))
    y = rng.integers(0, classes, n)
    X = np.clip(centers[y] + rng.normal(0, 40, (n, 8, 8)), 0, 255).astype(np.uint8)
    return X, y


def _run(graph, epochs=2, make_opt=None, **kwargs):
    gn.manual_seed(0)
    model = gn.Sequential(gn.Flatten(), gn.Linear(64, 48), gn.ReLU(), gn.Linear(48, 32),
                          gn.ReLU(), gn.Linear(32, 10)).to("gpu")
    make_opt = make_opt or (lambda p: gn.optim.SGD(p, lr=0.02, momentum=0.9))
    opt = make_opt(model.parameters())
    history = gn.fit(model, gn.CrossEntropyLoss(), opt, kwargs.pop("data", _data()),
                     epochs=epochs, batch_size=32, seed=5, progress=False, verbose=False,
                     graph=graph, **kwargs)
    return model, opt, history


def _weights(model):
    return [gn.to_numpy(p.data) for p in model.parameters()]


@pytest.mark.parametrize("make_opt", [
    lambda p: gn.optim.SGD(p, lr=0.02, momentum=0.9, nesterov=True, weight_decay=1e-4),
    lambda p: gn.optim.AdamW(p, lr=2e-3),
], ids=["sgd", "adamw"])
def test_graph_and_eager_steps_are_bit_identical(tiled_ops, make_opt):
    eager, eager_opt, eager_hist = _run("off", make_opt=make_opt)
    graph, graph_opt, graph_hist = _run("on", make_opt=make_opt)
    assert graph_hist["train_loss"] == eager_hist["train_loss"]      # 100 steps
    assert graph_hist["train_accuracy"] == eager_hist["train_accuracy"]
    assert eager_hist["train_loss"][1] < eager_hist["train_loss"][0], "nothing learnt"
    for a, b in zip(_weights(eager), _weights(graph)):
        np.testing.assert_array_equal(a, b)
    assert graph_opt.step_count == eager_opt.step_count == 100
    assert graph_opt.state_dict()["step"] == 100


def test_captured_validation_equals_the_eager_evaluation(tiled_ops):
    val = _data(n=1100, seed=1)  # 1024 + 76: two evaluation graphs
    _, _, eager_hist = _run("off", epochs=3, val=val)
    _, _, graph_hist = _run("on", epochs=3, val=val)
    assert graph_hist["val_accuracy"] == eager_hist["val_accuracy"]
    # the same batch losses; CuPy may weight them by the rows in float64 where the host sum
    # rounds each product to float32 first
    assert graph_hist["val_loss"] == pytest.approx(eager_hist["val_loss"], rel=1e-6)


def test_a_learning_rate_change_between_epochs_acts_in_the_replays():
    seen = []

    def schedule(base_lr, epoch):
        return base_lr if epoch == 0 else 0.0  # epoch 2 replays with lr 0: no change

    model, _, history = _run("on", epochs=3, schedule=schedule,
                             make_opt=lambda p: gn.optim.SGD(p, lr=0.05),
                             on_epoch_end=lambda record: seen.append(record["lr"]))
    assert seen == [0.05, 0.0, 0.0]
    first, _, _ = _run("on", epochs=1, make_opt=lambda p: gn.optim.SGD(p, lr=0.05))
    for a, b in zip(_weights(model), _weights(first)):
        np.testing.assert_array_equal(a, b)
    assert history["train_loss"][1] == pytest.approx(history["train_loss"][2], rel=1e-6)


def test_a_bad_label_still_raises():
    X, y = _data()
    y[700] = 10
    with pytest.raises(ValueError, match=r"label 10 at index 700"):
        _run("on", data=(X, y))


def test_resume_from_a_graph_run_repeats_the_uninterrupted_run(tmp_path):
    path = tmp_path / "c.npz"
    whole, _, whole_hist = _run("on", epochs=4)
    _run("on", epochs=2, checkpoint=str(path))
    resumed, _, resumed_hist = _run("on", epochs=4, resume=str(path))
    assert resumed_hist["train_loss"] == whole_hist["train_loss"]
    for a, b in zip(_weights(whole), _weights(resumed)):
        np.testing.assert_array_equal(a, b)


def test_graph_auto_times_the_graph_says_so_and_on_refuses_what_it_cannot_capture(capsys):
    gn.manual_seed(0)
    X, y = _data(n=200)  # 7 steps an epoch: the choice is made in the second epoch
    model = gn.Sequential(gn.Flatten(), gn.Linear(64, 10)).to("gpu")
    gn.fit(model, gn.CrossEntropyLoss(), gn.optim.SGD(model.parameters(), lr=0.01), (X, y),
           val=_data(n=100, seed=1), epochs=3, batch_size=32, progress=False)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("graph")]
    assert len(lines) == 1, lines
    assert re.fullmatch(r"graph: (on|off) \(a step takes [\d.]+ ms replayed, [\d.]+ ms "
                        r"uncaptured; median of 5 each\)", lines[0]), lines
    gn.fit(model, gn.CrossEntropyLoss(), gn.optim.SGD(model.parameters(), lr=0.01), (X, y),
           epochs=1, batch_size=32, progress=False)
    assert "graph: off (the run ended after 6 full steps" in capsys.readouterr().out
    dropout = gn.Sequential(gn.Flatten(), gn.Linear(64, 16), gn.Dropout(0.2),
                            gn.Linear(16, 10)).to("gpu")
    with pytest.raises(ValueError, match="graph='on' cannot capture this training: layer "
                                         "Dropout"):
        gn.fit(dropout, gn.CrossEntropyLoss(), gn.optim.SGD(dropout.parameters(), lr=0.01),
               (X, y), epochs=1, graph="on", progress=False)


@pytest.fixture
def step_reads_the_host_while_captured(monkeypatch):
    """Every static training step reads its loss on the host while its stream captures, as a
    step with a stray ``float()`` would: a host transfer CuPy refuses there."""
    import cupy
    from gpunet.training.engine.step import StaticStep

    run = StaticStep.run

    def run_and_read(self):
        run(self)
        if cupy.cuda.get_current_stream().is_capturing():
            float(self.loss)
    monkeypatch.setattr(StaticStep, "run", run_and_read)


def test_a_recording_that_fails_warns_under_auto_and_raises_under_on(
        step_reads_the_host_while_captured, capsys):
    gn.manual_seed(0)
    model = gn.Sequential(gn.Flatten(), gn.Linear(64, 32), gn.ReLU(), gn.Linear(32, 10))
    model.to("gpu")
    with pytest.warns(RuntimeWarning, match=r"graph: recording the training step failed "
                                            r"\(RuntimeError: the current stream is capturing"):
        history = gn.fit(model, gn.CrossEntropyLoss(), gn.optim.SGD(model.parameters(), lr=0.02),
                         _data(), epochs=2, batch_size=32, seed=5, progress=False)
    assert "graph: off (recording the step failed: see the warning)" in capsys.readouterr().out
    assert history["train_loss"][1] < history["train_loss"][0], "the uncaptured steps learnt"
    with pytest.raises(RuntimeError, match="the current stream is capturing"):
        _run("on", epochs=1)


def test_a_step_whose_recording_raised_cannot_run_again(step_reads_the_host_while_captured):
    import cupy
    from gpunet.training.engine.step_runner import StepRunner

    gn.manual_seed(0)
    model = gn.Sequential(gn.Flatten(), gn.Linear(64, 10)).to("gpu")
    X, y = (gn.get_backend("gpu").asarray(a) for a in _data(n=320))
    stream = cupy.cuda.Stream(non_blocking=True)
    runner = StepRunner(model, gn.optim.SGD(model.parameters(), lr=0.01), X, y, 32, 10, stream)
    try:
        with stream:
            runner.start_epoch()
            runner.run(0)  # the warm-up, uncaptured
            with pytest.raises(RuntimeError, match="the current stream is capturing"):
                runner.run(1)  # the recording
            assert not stream.is_capturing()
            with pytest.raises(RuntimeError, match="this training step raised earlier and "
                                                   "cannot run again"):
                runner.run(2)
    finally:
        runner.close()


def test_validation_the_static_step_cannot_gather_is_evaluated_eagerly():
    """float64 inputs and int16 labels are no static evaluation step's: the captured run
    evaluates them as gn.evaluate does, with the same numbers."""
    vX, vy = _data(n=100, seed=1)
    val = (vX.astype(np.float64) / 255, vy.astype(np.int16))
    model, _, history = _run("on", epochs=1, val=val)
    want = gn.evaluate(model, *val, gn.CrossEntropyLoss())
    assert history["val_loss"] == [want.loss] and history["val_accuracy"] == [want.accuracy]
