"""The ``gpunet`` command line: train, eval, resume, outputs, and argparse-style errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gpunet as gn
from gpunet.cli import confusion_matrix, main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--device", "cpu", "--no-progress", "--hidden", "16", "--batch-size", "50"]


def _train(tmp_path, *extra, out="run"):
    return main(["train", "--dataset", "xor", "--epochs", "3", "--out",
                 str(tmp_path / out), *SMALL, *extra])


def _error(capsys, argv, message):
    """Run ``argv``; expect exit 2 and ``message`` in an argparse-style error, no traceback."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert "error:" in err and message in err
    assert "Traceback" not in err


def test_train_writes_checkpoint_metrics_and_curves(tmp_path, capsys):
    assert _train(tmp_path) == 0
    out = capsys.readouterr().out
    assert "device: cpu" in out and "model: 2-16-2 ReLU" in out
    assert "\ndata: xor, generated (1000 training and 500 test samples, seed 0)\n" in out
    assert "epoch 3/3" in out and "test accuracy:" in out
    run = tmp_path / "run"
    names = {p.name for p in run.iterdir()}
    assert {"checkpoint.npz", "metrics.csv", "metrics.json"} <= names
    try:
        import matplotlib  # noqa: F401
        assert "curves.png" in names
    except ImportError:
        assert "curves.png skipped" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["epochs"]] == [1, 2, 3]
    assert metrics["config"]["dataset"] == "xor" and metrics["config"]["hidden"] == [16]
    assert 0 <= metrics["test"]["accuracy"] <= 1
    assert len((run / "metrics.csv").read_text().splitlines()) == 4
    saved = gn.load(run / "checkpoint.npz")
    assert saved.epoch == 3 and saved.meta["config"]["epochs"] == 3


def test_clip_grad_norm_is_a_setting_of_the_run(tmp_path, capsys):
    assert _train(tmp_path, "--clip-grad-norm", "0.01", out="clipped") == 0
    assert _train(tmp_path, out="free") == 0
    clipped, free = (gn.load(tmp_path / name / "checkpoint.npz") for name in ("clipped", "free"))
    assert clipped.meta["config"]["clip_grad_norm"] == 0.01
    assert free.meta["config"]["clip_grad_norm"] is None
    assert any(not np.allclose(clipped.model.state_dict()[k], free.model.state_dict()[k])
               for k in free.model.state_dict())
    assert main(["train", "--resume", str(tmp_path / "clipped" / "checkpoint.npz"),
                 "--epochs", "4", *SMALL]) == 0     # resumed with its clipping
    _error(capsys, ["train", "--resume", str(tmp_path / "clipped" / "checkpoint.npz"),
                    "--epochs", "5", "--clip-grad-norm", "1", *SMALL],
           "--clip-grad-norm 1.0 differs from the resumed run's 0.01")


def test_eval_prints_accuracy_and_confusion_matrix(tmp_path, capsys):
    _train(tmp_path, "--epochs", "30")
    train_out = capsys.readouterr().out
    assert main(["eval", str(tmp_path / "run" / "checkpoint.npz"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "\ndata: xor, generated (1000 training and 500 test samples, seed 0)\n" in out
    accuracy = out.split("test accuracy: ")[1].split("%")[0]
    assert f"test accuracy: {accuracy}%" in train_out  # same test set, same weights
    assert "confusion matrix" in out
    rows = out.split("recall)\n")[1].splitlines()[1:]
    counts = [[int(v) for v in row.split()[1:3]] for row in rows]
    assert sum(map(sum, counts)) == 500  # every test sample counted once


def test_train_and_eval_name_the_folder_fashion_mnist_was_read_from(fashion_mnist, tmp_path,
                                                                   capsys, monkeypatch):
    monkeypatch.delenv("GPUNET_DATA", raising=False)
    expected = f"data: Fashion-MNIST from {gn.datasets.checkout_dir('fashion-mnist')}"
    assert main(["train", "--epochs", "1", "--hidden", "8", "--out", str(tmp_path / "run"),
                 "--device", "cpu", "--no-progress", "--no-download"]) == 0
    assert [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("data:")] == [expected]
    assert main(["eval", str(tmp_path / "run" / "checkpoint.npz"), "--device", "cpu"]) == 0
    assert [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("data:")] == [expected]


def test_data_dir_is_the_only_folder_read(tmp_path, capsys, monkeypatch):
    """Fashion-MNIST ships with the checkout, yet an empty --data-dir is an error naming it."""
    monkeypatch.setenv("GPUNET_FASHION_MNIST_MIRROR", "http://127.0.0.1:9/")  # refused
    empty = tmp_path / "empty"
    empty.mkdir()
    for more in (["--no-download"], []):
        _error(capsys, ["train", "--data-dir", str(empty), "--device", "cpu",
                        "--out", str(tmp_path / "run"), *more],
               f"not found in (root= or --data-dir: the only place searched):\n  {empty}\n")
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_a_mistyped_option_gets_the_commands_usage_and_the_closest_option(capsys):
    for argv, usage, message in [
            (["train", "--epcohs", "3"], "usage: gpunet train",
             "gpunet train: error: unrecognized arguments: --epcohs 3; did you mean --epochs?"),
            (["eval", "c.npz", "--batch-szie=8"], "usage: gpunet eval",
             "unrecognized arguments: --batch-szie=8; did you mean --batch-size?"),
            (["demo", "xor", "--fsat"], "usage: gpunet demo", "did you mean --fast?"),
            (["eval", "a.npz", "b.npz"], "usage: gpunet eval",
             "gpunet eval: error: unrecognized arguments: b.npz\n")]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.startswith(usage) and message in err, err


def test_curves_png_puts_whole_epochs_on_its_x_axis():
    pytest.importorskip("matplotlib", reason="matplotlib comes with the dev and plot extras")
    from gpunet.training.run_files.run_output import curves_figure
    for epochs in (2, 7, 20, 45):
        history = {"epoch": list(range(1, epochs + 1))}
        history |= {f"{split}_{metric}": [1.0 / e for e in history["epoch"]]
                    for split in ("train", "val") for metric in ("loss", "accuracy")}
        for ax in curves_figure(history).axes:
            low, high = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if low <= t <= high]
            assert len(ticks) >= 2 and all(t == int(t) for t in ticks), (epochs, ticks)


def test_confusion_matrix_counts():
    m = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_resume_continues_the_run(tmp_path, capsys):
    _train(tmp_path, "--epochs", "2")
    checkpoint = str(tmp_path / "run" / "checkpoint.npz")
    assert main(["train", "--resume", checkpoint, "--epochs", "4", "--device", "cpu",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "resuming at epoch 2" in out and "epoch 3/4" in out and "epoch 1/4" not in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["epochs"]] == [1, 2, 3, 4]
    assert gn.load(checkpoint).epoch == 4
    _error(capsys, ["train", "--resume", checkpoint, "--hidden", "8", "--device", "cpu"],
           "--hidden [8] differs from the resumed run's [16]")
    for more in ([], ["--epochs", "2"]):  # the stored total (4), or a smaller one
        _error(capsys, ["train", "--resume", checkpoint, "--device", "cpu", *more],
               "already trained 4 epochs; pass --epochs N with N > 4")


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    _train(tmp_path)
    before = (tmp_path / "run" / "checkpoint.npz").read_bytes()
    _error(capsys, ["train", "--dataset", "xor", "--out", str(tmp_path / "run"), *SMALL],
           "already holds a checkpoint")
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "-1"], "argument --lr: expected a finite number > 0, got '-1'"),
    (["train", "--epochs", "0"], "argument --epochs: expected a positive integer"),
    (["train", "--val-split", "1"], "argument --val-split: expected a finite number in [0, 1)"),
    (["train", "--momentum", "nan"], "argument --momentum"),
    (["train", "--clip-grad-norm", "0"], "argument --clip-grad-norm: expected a finite "
                                         "number > 0, got '0'"),
    (["train", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["train", "--activation", "gelu"], "invalid choice: 'gelu'"),
    (["fly"], "invalid choice: 'fly'"),
    ([], "required: COMMAND"),
])
def test_bad_arguments_exit_2(capsys, argv, message):
    _error(capsys, argv, message)


def test_semantic_errors_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GPUNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no cached MNIST
    _error(capsys, ["eval", str(tmp_path / "missing.npz")], "does not exist")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a checkpoint")
    _error(capsys, ["eval", str(corrupt)], "is not an .npz file")
    _error(capsys, ["train", "--resume", str(corrupt), "--device", "cpu"],
           "is not an .npz file")
    _error(capsys, ["train", "--data-dir", str(tmp_path / "nowhere"), "--device", "cpu",
                    "--out", str(tmp_path / "x")], "is not a folder")
    _error(capsys, ["train", "--data-dir", str(tmp_path), "--dataset", "mnist",
                    "--no-download", "--device", "cpu", "--out", str(tmp_path / "y")],
           "drop --no-download")
    gn.save(tmp_path / "plain.npz", gn.Sequential(gn.Linear(2, 2)))
    _error(capsys, ["eval", str(tmp_path / "plain.npz")], "not written by gpunet train")


def test_gpu_unavailable_is_a_clear_error(capsys):
    ok, _ = gn.gpu_status()
    if ok:
        pytest.skip("a GPU answers here")
    _error(capsys, ["train", "--device", "gpu", "--dataset", "xor"], "GPU backend")


def _run_module(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "gpunet", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


def test_python_dash_m_gpunet_help():
    result = _run_module("train", "--help")
    assert result.returncode == 0
    for option in ("--dataset", "--data-dir", "--hidden", "--activation", "--epochs",
                   "--batch-size", "--optimizer", "--lr", "--momentum", "--weight-decay",
                   "--val-split", "--patience", "--device", "--seed", "--out", "--resume",
                   "--no-progress"):
        assert option in result.stdout


def test_bench_help_lists_its_options():
    result = _run_module("bench", "--help")
    assert result.returncode == 0, result.stderr
    assert "--batch-sizes" in result.stdout


def _device_lines(text):
    return [line for line in text.splitlines() if line.startswith("device:")]


def test_auto_device_says_in_one_line_why_it_fell_back_to_the_cpu(tmp_path, capsys,
                                                                  monkeypatch):
    import gpunet.backend as backend_module

    reason = "no CUDA device answers (simulated for the test)"
    monkeypatch.setattr(backend_module, "gpu_status", lambda: (False, reason))
    assert _train(tmp_path, "--device", "auto") == 0  # the last --device wins
    assert _device_lines(capsys.readouterr().out) == [
        f"device: cpu (numpy); --device auto fell back to the CPU: {reason}"]
    checkpoint = str(tmp_path / "run" / "checkpoint.npz")
    assert main(["eval", checkpoint]) == 0  # --device auto is the default
    assert _device_lines(capsys.readouterr().out) == [
        f"device: cpu (numpy); --device auto fell back to the CPU: {reason}"]
    assert main(["eval", checkpoint, "--device", "cpu"]) == 0  # asked for: nothing to say
    assert _device_lines(capsys.readouterr().out) == ["device: cpu (numpy)"]


def test_auto_device_fallback_gives_the_real_probe_reason(tmp_path, capsys):
    gn.backend.gpu_status.cache_clear()  # probe afresh
    ok, reason = gn.gpu_status()
    if ok:
        pytest.skip("a GPU answers here: --device auto does not fall back")
    assert _train(tmp_path, "--device", "auto") == 0
    assert _device_lines(capsys.readouterr().out) == [
        f"device: cpu (numpy); --device auto fell back to the CPU: {reason}"]
