"""``gn.fit`` of a stack: each model as trained alone, one data order or one per model, early
stopping per model, the static step, evaluation, checkpoints and resuming."""
import numpy as np
import pytest

import gpunet as gn

LRS = [0.02, 0.05, 0.1, 0.3]


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((4, 10)) * 1.5
    y = rng.integers(0, 4, n)
    return (centers[y] + rng.standard_normal((n, 10))).astype(np.float32), y


def _architecture():
    return gn.Sequential(gn.Linear(10, 16), gn.ReLU(), gn.Linear(16, 12), gn.Tanh(),
                         gn.Linear(12, 4))


def _fit(model, lr, **kwargs):
    opt = gn.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    kwargs = {"epochs": 6, "batch_size": 32, "seed": 3, "val_split": 0.2, "progress": False,
              "verbose": False, **kwargs}
    return gn.fit(model, gn.CrossEntropyLoss(), opt, _data(), **kwargs), opt


def test_each_model_of_a_fitted_stack_is_the_model_fitted_alone():
    architecture = _architecture()
    stack = gn.stack(architecture, 4, seeds=[5, 6, 7, 8])
    histories, _ = _fit(stack, LRS, schedule=gn.schedules.CosineLR(6), patience=2)
    assert isinstance(histories, list) and len(histories) == 4
    for i, seed in enumerate(stack.seeds):
        gn.manual_seed(seed)
        alone = gn.from_config(architecture.config())
        history, _ = _fit(alone, LRS[i], schedule=gn.schedules.CosineLR(6), patience=2)
        assert len(histories[i]) == len(history), f"model {i} stopped elsewhere"
        for key in ("lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(histories[i][key], history[key], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{key} of model {i}")
        for (name, p), q in zip(alone.named_parameters(), stack.parameters()):
            scale = np.abs(p.data).max()
            assert np.abs(q.data[i] - p.data).max() <= 1e-5 * scale, f"{name} of model {i}"


@pytest.mark.parametrize("order", ["shared", "per_model", "bootstrap"])
def test_the_static_step_trains_a_stack_as_the_eager_loop_bit_for_bit(order):
    runs = []
    for graph in ("off", "auto"):
        stack = gn.stack(_architecture(), 4, seeds=[1, 1, 2, 2])
        histories, opt = _fit(stack, LRS, graph=graph, order=order)
        runs.append((stack, histories, opt))
    (eager, eager_h, eager_opt), (static, static_h, static_opt) = runs
    for a, b in zip(eager_h, static_h):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert a[key] == b[key], key
    for p, q in zip(eager.parameters(), static.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert eager_opt.step_count == static_opt.step_count == 6 * 8


def test_orders_per_model_differ_and_a_shared_order_does_not():
    weights = {}
    for order in ("shared", "per_model", "bootstrap"):
        stack = gn.stack(_architecture(), 2, seeds=[4, 4])  # two identical models
        _fit(stack, 0.1, order=order, epochs=2)
        weights[order] = stack.state_dict()["0.weight"]
    # the same model twice, the same batches: equal but for the GEMMs' rounding
    np.testing.assert_allclose(weights["shared"][0], weights["shared"][1], atol=1e-5)
    for order in ("per_model", "bootstrap"):
        assert np.abs(weights[order][0] - weights[order][1]).max() > 1e-2, order
    assert np.abs(weights["per_model"] - weights["bootstrap"]).max() > 1e-2


def test_a_diverging_model_stops_and_the_others_train_on(capsys):
    stack = gn.stack(_architecture(), 3, seeds=[1, 2, 3])
    histories, opt = _fit(stack, [0.05, 1e30, 0.1], verbose=True)
    lengths = [len(h) for h in histories]
    assert lengths[0] == lengths[2] == 6 and lengths[1] < 6
    assert not np.isfinite(histories[1]["train_loss"][-1]) or \
        not np.isfinite(histories[1]["val_loss"][-1])
    assert opt.lr[1] == 0 and opt.lr[0] > 0
    assert histories[0]["val_accuracy"][-1] > 0.8
    assert "model 1 (a loss no longer finite); 2 training" in capsys.readouterr().out


def test_when_every_model_diverges_fit_raises():
    stack = gn.stack(_architecture(), 2)
    with pytest.raises(gn.NonFiniteLossError, match="every model still training"):
        _fit(stack, [1e30, 1e32])


def test_early_stopping_per_model_freezes_each_at_its_best_epoch():
    architecture = _architecture()
    stack = gn.stack(architecture, 3, seeds=[1, 2, 3])
    records = []
    lrs = [0.02, 0.3, 0.1]  # rates that learn: a chaotic one amplifies any rounding
    histories, opt = _fit(stack, lrs, patience=1, epochs=15, on_epoch_end=records.append)
    lengths = [len(h) for h in histories]
    assert min(lengths) < 15, "no model stopped early"
    assert len(records) == max(lengths)
    assert all(len(r) == 3 for r in records)
    assert [r is None for r in records[-1]] == [n < max(lengths) for n in lengths]
    for i, history in enumerate(histories):
        best = int(np.argmin(history["val_loss"]))
        assert len(history) in (best + 2, 15), f"model {i}: patience 1 after its best"
        gn.manual_seed(stack.seeds[i])
        alone = gn.from_config(architecture.config())
        alone_history, _ = _fit(alone, lrs[i], patience=1, epochs=15)
        assert len(alone_history) == len(history)
        for (name, p), q in zip(alone.named_parameters(), stack.parameters()):
            scale = np.abs(p.data).max()  # the best epoch's weights, kept to the end
            assert np.abs(q.data[i] - p.data).max() <= 1e-5 * scale, f"{name} of model {i}"


def test_evaluate_and_predict_give_one_result_per_model():
    stack = gn.stack(_architecture(), 3, seeds=[1, 2, 3])
    X, y = _data(50)
    result = gn.evaluate(stack, X, y, gn.CrossEntropyLoss(), batch_size=16)
    outputs = gn.predict(stack, X, batch_size=16)
    assert outputs.shape == (3, 50, 4)
    for i in range(3):
        alone = gn.evaluate(stack[i], X, y, gn.CrossEntropyLoss(), batch_size=16)
        assert result.loss[i] == pytest.approx(alone.loss, rel=1e-6)
        assert result.accuracy[i] == alone.accuracy
        np.testing.assert_allclose(outputs[i], gn.predict(stack[i], X), rtol=1e-5,
                                   atol=1e-6)


def test_a_stack_checkpoint_resumes_as_the_uninterrupted_run(tmp_path):
    def run(epochs, resume=None):
        stack = gn.stack(_architecture(), 3, seeds=[1, 2, 3])
        return _fit(stack, [0.02, 3.0, 0.05], epochs=epochs, patience=1, resume=resume,
                    checkpoint=tmp_path / "run.npz"), stack

    (whole, _), whole_stack = run(8)
    (tmp_path / "run.npz").unlink()
    run(3)
    (resumed, _), resumed_stack = run(8, resume=tmp_path / "run.npz")
    assert [len(h) for h in resumed] == [len(h) for h in whole]
    for a, b in zip(resumed, whole):
        assert a["val_loss"] == b["val_loss"]
    for p, q in zip(resumed_stack.parameters(), whole_stack.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    loaded = gn.load(tmp_path / "run.npz")
    assert isinstance(loaded.model, gn.Stack) and len(loaded.model) == 3
    stopped = [len(h) < 8 for h in resumed]
    assert any(stopped)
    assert [lr == 0 for lr in loaded.make_optimizer().lr] == stopped  # frozen ones stay so


def test_stack_options_are_checked():
    X, y = _data(40)
    model = _architecture()
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="order='per_model' gives each model of a stack"):
        gn.fit(model, gn.CrossEntropyLoss(), opt, (X, y), order="per_model", epochs=1)
    stack = gn.stack(model, 2)
    opt = gn.optim.SGD(stack.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="order must be one of"):
        gn.fit(stack, gn.CrossEntropyLoss(), opt, (X, y), order="random", epochs=1)
    loader = gn.DataLoader(X, y, 8, shuffle=False)
    with pytest.raises(ValueError, match="an order per model draws its own batches"):
        gn.fit(stack, gn.CrossEntropyLoss(), opt, loader, order="per_model", epochs=1)


def test_a_checkpoint_declaring_a_huge_stack_is_refused_before_anything_is_built():
    from gpunet.training.run_files.checkpoint_layout import implied_shapes

    config = gn.stack(_architecture(), 2).config()
    config["models"] = 10**9
    with pytest.raises(gn.CheckpointError, match="stack of 1,000,000,000 models declares more "
                                                 "than 1,000,000,000 parameters"):
        implied_shapes(config, "evil.npz", gn.LoadLimits())
    config["model"] = {"type": "Linear", "in_features": 2, "out_features": 2}
    with pytest.raises(gn.CheckpointError, match="needs a Sequential 'model'"):
        implied_shapes(config, "evil.npz", gn.LoadLimits())
