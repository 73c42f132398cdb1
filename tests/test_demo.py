"""``gpunet demo``: each demo's numbers hold the lecture's claim (fast mode, as CI runs them),
its figure is written, and the command line reports bad input as errors."""
import ast
import re

import numpy as np
import pytest

import gpunet as gn
from gpunet import demo
from gpunet.cli import main
from gpunet.demo import backprop, plotting
from gpunet.demo import cli as demo_cli
from gpunet.demo.common import DemoResult
from test_cli import _error  # exit 2, an "error:" line with the message, no traceback

PNG = b"\x89PNG\r\n\x1a\n"


def _has_matplotlib():
    try:
        plotting.pyplot()
    except plotting.MatplotlibMissing:
        return False
    return True


needs_matplotlib = pytest.mark.skipif(not _has_matplotlib(),
                                      reason="matplotlib not installed (pip install -e '.[dev]')")


@pytest.fixture
def figures(tmp_path):
    """A folder for the figure where matplotlib is installed, else None (numbers only)."""
    return tmp_path / "figures" if _has_matplotlib() else None


def _check_figure(result, figures, name):
    if figures is None:
        assert result.figure is None
        return
    assert result.figure == figures / f"{name}.png"
    assert result.figure.read_bytes()[:8] == PNG
    assert result.figure.stat().st_size > 10_000  # drawn, not an empty canvas


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "full"])
def test_xor_linear_model_stays_at_ln2_while_the_mlp_solves_the_reported_seeds(fast, tmp_path,
                                                                              figures):
    result = demo.run("xor", figures if fast else None, fast=fast, verbose=False)
    assert abs(result.linear_loss - np.log(2)) < 1e-3
    assert result.linear_accuracy <= 0.75
    assert result.solved, "no seed solved XOR"
    X, y = gn.datasets.xor()
    for run in result.runs:  # the reported accuracy is the model's, checked here again
        predicted = gn.to_numpy(gn.predict(run.model, X)).argmax(axis=1)
        assert (run.seed in result.solved) == bool((predicted == y).all())
        if run.seed in result.failed:
            assert run.dead > 0  # the failures the demo shows are dead ReLUs
    solved = ", ".join(map(str, result.solved))
    assert f"100% on seeds {solved} " in result.conclusion[1]
    assert "0.6931" in result.conclusion[0]
    if fast:
        _check_figure(result, figures, "xor")


def test_approximation_error_falls_with_width(figures):
    result = demo.run("approximation", figures, fast=True, verbose=False)
    sine = result.errors("sin(x)")
    assert all(a > b for a, b in zip(sine, sine[1:])), sine
    assert sine[-1] < 1e-3
    step = result.errors("step")
    assert step[-1] < step[0] / 10, step
    _check_figure(result, figures, "approximation")


def test_deep_sigmoid_first_layer_gradient_is_far_below_relus(figures):
    result = demo.run("activations", figures, fast=True, verbose=False)
    assert result.first_layer("sigmoid") < 1e-3 * result.first_layer("relu")
    sigmoid = result.grad_norms["sigmoid"]
    assert all(a < b for a, b in zip(sigmoid, sigmoid[1:-1]))  # shrinking towards the input
    z = result.z
    value, slope = result.curves["sigmoid"]
    assert slope.max() == pytest.approx(0.25, abs=1e-3)
    np.testing.assert_allclose(slope, value * (1 - value), atol=1e-6)
    _, relu_slope = result.curves["relu"]
    assert (relu_slope[z > 0] == 1).all() and (relu_slope[z < 0] == 0).all()
    _check_figure(result, figures, "activations")


def test_descent_full_batch_smooth_sgd_noisy_minibatch_between(figures):
    result = demo.run("descent", figures, fast=True, verbose=False)
    full, sgd, mini = result.methods
    assert (full.batch_size, sgd.batch_size, mini.batch_size) == (128, 1, 16)
    assert len({m.losses[0] for m in result.methods}) == 1  # the same initial weights
    assert full.rises == 0 and sgd.rises >= mini.rises
    assert full.losses[-1] > mini.losses[-1] and full.losses[-1] > sgd.losses[-1]
    assert sgd.losses[1] < mini.losses[1] < full.losses[1]  # progress in the first epoch
    assert [m.lr for m in result.methods] == pytest.approx(
        [0.05 * np.sqrt(b) for b in (128, 1, 16)])
    _check_figure(result, figures, "descent")


def test_batch_size_is_chosen_on_the_validation_set(fashion_mnist, figures):
    result = demo.run("batch-size", figures, fast=True, verbose=False)
    _, _, source = gn.datasets.load_with_source("fashion-mnist", download=False)
    assert result.report()[0] == source  # the one line naming the folder read
    sizes = [t.batch_size for t in result.trials]
    assert sizes == [16, 128, 1024]
    assert [t.lr for t in result.trials] == pytest.approx([0.05 * b / 128 for b in sizes])
    best = max(result.trials, key=lambda t: t.val_accuracy)
    assert result.chosen == best.batch_size
    assert best.val_accuracy > 0.7
    assert f"chosen: {best.batch_size}" in result.conclusion[0]
    assert all(t.epoch_seconds > 0 for t in result.trials)
    _check_figure(result, figures, "batch-size")


def test_batch_size_on_a_gpu_also_reports_throughput(tmp_path):
    from gpunet.demo.batch_size import BatchSizeResult, Trial, _conclusion, plot
    trials = [Trial(16, 0.00625, 0.80, 0.2, 50_000.0), Trial(128, 0.05, 0.82, 0.025, 400_000.0),
              Trial(1024, 0.4, None, None, None)]  # the last one diverged
    result = BatchSizeResult(trials=trials, device="gpu", train_samples=10_000)
    lines = _conclusion(result, {"epochs": 2})
    assert "82.0%, diverged; chosen: 128" in lines[0]
    assert lines[1].endswith("samples/s: 50,000, 400,000")
    if _has_matplotlib():
        figure = plot(result, tmp_path / "batch-size.png")
        assert figure.read_bytes()[:8] == PNG


def _printed(out, name):
    """The value printed on the step line that starts with ``name``."""
    line = next(l for l in out.splitlines() if l.strip().startswith(name + " "))
    return np.array(ast.literal_eval(line.rsplit("= ", 1)[1]))


def test_backprop_printed_gradients_equal_the_layers_backward(capsys, figures):
    result = demo.run("backprop", figures)
    out = capsys.readouterr().out
    model = gn.Sequential(gn.Linear(3, 2), gn.Sigmoid(), gn.Linear(2, 1), dtype="float64")
    model.load_state_dict({k: np.array(v) for k, v in backprop.WEIGHTS.items()})
    loss_fn = gn.MSELoss()
    loss = loss_fn(model(backprop.X[None, :]), np.array([[backprop.Y]]))
    dx = model.backward(loss_fn.backward())
    expected = {"dJ/dW(1)": model[0].weight.grad, "dJ/db(1)": model[0].bias.grad,
                "dJ/dW(2)": model[2].weight.grad, "dJ/db(2)": model[2].bias.grad,
                "dJ/da(1)": dx[0], "J": float(loss)}
    for name, value in expected.items():
        np.testing.assert_allclose(_printed(out, name), value, rtol=1e-5, atol=1e-12,
                                   err_msg=name)
    assert "gn.gradcheck passes" in out
    assert result.largest_difference < 1e-12
    _check_figure(result, figures, "backprop")


# -- the command line -------------------------------------------------------------------
def test_list_names_every_demo(capsys):
    assert main(["demo", "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(demo.DEMOS)


@needs_matplotlib
def test_command_prints_the_conclusion_and_writes_the_figure(tmp_path, capsys):
    out_dir = tmp_path / "new" / "folder"
    assert main(["demo", "descent", "--fast", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("== descent (cpu): ")
    assert "training loss after 10 epochs" in out
    assert f"wrote {out_dir / 'descent.png'}" in out
    assert (out_dir / "descent.png").read_bytes()[:8] == PNG


def test_all_runs_every_demo_in_order(capsys, monkeypatch):
    ran = []

    def fake_run(name, out, *, device, fast):
        ran.append((name, out, fast))
        return DemoResult(conclusion=[f"{name} done"], seconds=0.5)
    monkeypatch.setattr(demo_cli, "run", fake_run)
    assert main(["demo", "all", "--fast", "--no-figure"]) == 0
    assert ran == [(name, None, True) for name in demo.DEMOS]
    headers = [line.split()[1] for line in capsys.readouterr().out.splitlines()
               if line.startswith("== ")]
    assert headers == list(demo.DEMOS)


def test_no_figure_and_missing_matplotlib_still_print_the_numbers(tmp_path, capsys,
                                                                  monkeypatch):
    assert main(["demo", "backprop", "--no-figure", "--out", str(tmp_path / "a")]) == 0
    assert "by hand = model.backward" in capsys.readouterr().out
    assert not (tmp_path / "a").exists()

    def missing():
        raise plotting.MatplotlibMissing("the figure needs matplotlib, which is not installed")
    monkeypatch.setattr(plotting, "pyplot", missing)
    assert main(["demo", "backprop", "--out", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert "no figure: the figure needs matplotlib" in captured.err
    assert "by hand = model.backward" in captured.out
    assert not (tmp_path / "b").exists()
    with pytest.raises(plotting.MatplotlibMissing):  # from Python: before any computing
        demo.run("backprop", tmp_path / "c", verbose=False)


def test_bad_arguments_are_errors_that_say_what_was_expected(tmp_path, capsys):
    _error(capsys, ["demo", "mnist"], "invalid choice: 'mnist'")
    _error(capsys, ["demo"], "expected a demo NAME")
    if _has_matplotlib():  # without it no figure is written and --out is not used
        a_file = tmp_path / "file.txt"
        a_file.write_text("x")
        _error(capsys, ["demo", "backprop", "--out", str(a_file)],
               "expected the folder for the figures (--out), got")
        assert main(["demo", "xor", "--out", str(a_file)]) == 2
        assert "==" not in capsys.readouterr().out  # refused before any demo ran
        _error(capsys, ["demo", "backprop", "--out", str(a_file / "sub")], "cannot create")
    _error(capsys, ["demo", "xor", "--device", "tpu"], "invalid choice: 'tpu'")
    if not gn.gpu_status()[0]:
        _error(capsys, ["demo", "xor", "--device", "gpu"], "GPU backend is unavailable")


def test_python_api_names_the_demos_on_a_bad_name():
    with pytest.raises(ValueError, match=re.escape("expected one of: xor, approximation")):
        demo.run("XOR")
    with pytest.raises(TypeError, match="fast must be True or False"):
        demo.run("xor", fast="yes")
