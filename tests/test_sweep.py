"""``gpunet sweep``: the grid as one stack, ranked by validation accuracy; its files, the best
model's checkpoint, the ensemble, and its errors."""
import csv
import json

import numpy as np
import pytest

import gpunet as gn
from gpunet.cli import main
from gpunet.cli_setup import load_data
from gpunet.sweep import report

ARGS = ["sweep", "--quick", "--dataset", "spirals", "--lr", "0.03", "0.3", "--weight-decay",
        "0", "0.01", "--seeds", "2", "--hidden", "16", "16", "--epochs", "3", "--device",
        "cpu", "--no-progress"]


def _error(capsys, argv, message):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err


def test_sweep_ranks_the_grid_and_writes_its_files(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main([*ARGS, "--ensemble", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sweep: 8 models = lr {0.03, 0.3} x weight decay {0, 0.01} x 2 seed(s)" in printed
    assert "8 models trained together in" in printed and "one by one about" in printed
    summary = json.loads((out / "sweep.json").read_text())
    models = summary["models"]
    assert [(m["lr"], m["weight_decay"], m["seed"]) for m in models] == [
        (lr, wd, seed) for lr in (0.03, 0.3) for wd in (0.0, 0.01) for seed in (0, 1)]
    ranked = sorted(models, key=lambda m: m["rank"])
    accuracies = [m["val_accuracy"] for m in ranked]
    assert accuracies == sorted(accuracies, reverse=True)
    assert all(len(m["history"]) == m["epochs"] == 3 for m in models)
    with open(out / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["model"]) for r in table] == [m["model"] for m in ranked]
    best = gn.load(out / "best.npz")
    assert best.meta["config"]["lr"] == ranked[0]["lr"]
    assert summary["best"]["model"] == ranked[0]["model"]
    # the best model's test accuracy, as gpunet eval measures it
    _, (X, y), _, _ = load_data("spirals", None, False, 0)
    X, y = X[:1000], y[:1000]
    assert gn.evaluate(best.model, X, y).accuracy == pytest.approx(
        summary["best"]["test_accuracy"])
    ensemble = summary["ensemble"]
    assert ensemble["models"] == [m["model"] for m in ranked[:3]]
    assert 0 <= ensemble["accuracy"] <= 1 and len(ensemble["members"]) == 3
    assert f"ensemble of the top 3: test accuracy {100 * ensemble['accuracy']:.2f}%" in printed
    assert summary["one_by_one_seconds"] > 0 and summary["seconds"] > 0
    try:
        import matplotlib  # noqa: F401
        assert (out / "sweep.png").stat().st_size > 0
    except ImportError:
        assert "sweep.png skipped" in printed


def test_the_ensemble_averages_the_top_models_probabilities():
    stack = gn.stack(gn.Sequential(gn.Linear(2, 8), gn.ReLU(), gn.Linear(8, 3)), 4)

    class Result:
        def ranking(self):
            return [2, 0, 3, 1]

    result = Result()
    result.stack = stack
    X = np.random.default_rng(0).standard_normal((50, 2)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 50)
    combined = report.ensemble(result, X, y, 2)
    logits = [gn.predict(stack[i], X).astype(np.float64) for i in (2, 0)]
    probs = [np.exp(z - z.max(1, keepdims=True)) for z in logits]
    probs = [p / p.sum(1, keepdims=True) for p in probs]
    assert combined["accuracy"] == np.mean((probs[0] + probs[1]).argmax(1) == y)
    assert combined["members"] == [np.mean(p.argmax(1) == y) for p in probs]


def test_sweep_errors_are_usage_errors(tmp_path, capsys):
    _error(capsys, [*ARGS, "--ensemble", "9", "--out", str(tmp_path / "a")],
           "--ensemble 9 is more than the 8 models swept")
    _error(capsys, [*ARGS, "--lr", "-1"], "argument --lr: expected a finite number > 0")
    assert main([*ARGS, "--out", str(tmp_path / "b")]) == 0
    _error(capsys, [*ARGS, "--out", str(tmp_path / "b")], "already holds a sweep")


def test_dropout_puts_a_dropout_after_each_hidden_activation(tmp_path, capsys):
    out = tmp_path / "dropout"
    assert main([*ARGS, "--dropout", "0.25", "--out", str(out)]) == 0
    best = gn.load(out / "best.npz").model
    kinds = [type(layer).__name__ for layer in best]
    assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout",
                     "Linear"]
    assert best[3].p == 0.25
    assert json.loads((out / "sweep.json").read_text())["settings"]["dropout"] == 0.25


def test_augment_shifts_trains_on_five_times_the_training_images(tmp_path, capsys):
    out = tmp_path / "shifts"
    argv = ["sweep", "--quick", "--augment", "shifts", "--hidden", "8", "--epochs", "1",
            "--device", "cpu", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "18,000 training (3,600 and their 4 shifted copies), 400 validation" in printed
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["augment"] == "shifts"


def test_augment_needs_an_image_dataset(tmp_path, capsys):
    _error(capsys, [*ARGS, "--augment", "shifts", "--out", str(tmp_path / "a")],
           "--augment shifts moves the pixels of images: it needs an image dataset "
           "(fashion-mnist, mnist), got --dataset spirals")
    assert not (tmp_path / "a").exists()
