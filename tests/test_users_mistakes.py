"""Mistakes that used to pass silently or confuse: each now gets an error or a warning that
names the fix."""
import numpy as np
import pytest

import gpunet as gn


def _model():
    return gn.Sequential(gn.Linear(4, 8), gn.ReLU(), gn.Linear(8, 3))


def test_sgd_given_the_model_itself_names_parameters():
    with pytest.raises(TypeError, match=r"got the model itself \(Sequential\); pass "
                                        r"model.parameters\(\)"):
        gn.optim.SGD(_model(), lr=0.1)


def test_an_optimizer_given_arrays_names_what_it_expects():
    with pytest.raises(TypeError, match=r"expects gpunet Parameters .* got ndarray at position 0"):
        gn.optim.Adam([np.zeros(3)])
    with pytest.raises(TypeError, match=r"expects an iterable of gpunet Parameters"):
        gn.optim.Adam(3)


def test_an_empty_parameter_list_says_where_layers_are_found():
    model = _model()
    params = model.parameters()
    list(params)   # used up
    with pytest.raises(ValueError, match=r"assigned as attributes.*used up once read"):
        gn.optim.SGD(params, lr=0.1)


def test_check_holds_finds_an_optimizer_of_another_model():
    old, new = _model(), _model()
    opt = gn.optim.SGD(old.parameters(), lr=0.1)
    opt.check_holds(old)
    with pytest.raises(ValueError, match=r"none of the parameters it holds belongs to the "
                                         r"model.*SGD\(model.parameters\(\)"):
        opt.check_holds(new)
    partial = gn.optim.SGD(list(new.parameters())[:2], lr=0.1)  # training a part is fine
    partial.check_holds(new)


def _blobs(rng, n=120, scale=1.0):
    y = rng.integers(0, 3, n)
    X = (rng.standard_normal((n, 4)) + 2 * np.eye(4)[y]).astype(np.float32) * scale
    return X, y


def test_fit_refuses_an_optimizer_made_for_another_model(rng):
    X, y = _blobs(rng)
    old, new = _model(), _model()
    opt = gn.optim.SGD(old.parameters(), lr=0.1)   # a notebook cell run again made `new`
    with pytest.raises(ValueError, match="does not update this model"):
        gn.fit(new, gn.CrossEntropyLoss(), opt, (X, y), epochs=1, verbose=False)


@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_takes_a_dataloader_as_train(rng, shuffle):
    X, y = _blobs(rng)
    gn.manual_seed(0)  # weights and shuffles independent of the tests run before
    model = _model()
    opt = gn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = gn.DataLoader(X, y, batch_size=25, shuffle=shuffle)
    history = gn.fit(model, gn.CrossEntropyLoss(), opt, loader, epochs=8, verbose=False)
    assert opt.step_count == 8 * 5                  # 120 samples in batches of 25
    assert history["train_accuracy"][-1] > 0.8
    with pytest.raises(ValueError, match="DataLoader with batch_size=25, and fit got "
                                         "batch_size=64"):
        gn.fit(model, gn.CrossEntropyLoss(), opt, loader, batch_size=64, verbose=False)


def test_binary_classification_reports_accuracy(rng):
    X, _ = _blobs(rng)
    t = (X[:, 0] > X[:, 1]).astype(np.float32)     # targets of shape (n,) for logits (n, 1)
    model = gn.Sequential(gn.Linear(4, 8), gn.Tanh(), gn.Linear(8, 1))
    opt = gn.optim.Adam(model.parameters(), lr=0.05)
    history = gn.fit(model, gn.BCEWithLogitsLoss(), opt, (X, t), val=(X[:40], t[:40]),
                     epochs=30, batch_size=30, verbose=False)
    assert history["train_accuracy"][-1] > 0.9 and history["val_accuracy"][-1] > 0.9
    result = gn.evaluate(model, X, t, gn.BCEWithLogitsLoss())
    expected = np.mean((gn.predict(model, X)[:, 0] > 0) == (t > 0.5))
    assert result.accuracy == pytest.approx(expected)


def _caught(fn):
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w for w in caught if "look unscaled" in str(w.message)]


def test_fit_warns_once_about_unscaled_float_images(rng):
    X, y = _blobs(rng)
    images = (np.clip(X, 0, 1) * 255).round()      # float images in 0..255, never scaled

    def train(data):
        model = _model()
        opt = gn.optim.SGD(model.parameters(), lr=0.01)
        gn.fit(model, gn.CrossEntropyLoss(), opt, (data, y), epochs=2, verbose=False)

    warned = _caught(lambda: train(images))
    assert len(warned) == 1 and "has a root mean square of 1" in str(warned[0].message)
    assert "X / 255" in str(warned[0].message)
    assert not _caught(lambda: train(images / 255))
    assert not _caught(lambda: train(images.astype(np.uint8)))   # fit scales uint8 itself


def _warns(X):
    """Whether fit's unscaled-input warning fires for the float inputs ``X``."""
    from gpunet.training.loop.inputs import warn_if_unscaled

    return bool(_caught(lambda: warn_if_unscaled(X, "train")))


def test_the_unscaled_rule_is_per_feature_not_the_largest_value(rng):
    standardised = rng.standard_normal((2000, 6))
    rare = np.zeros(2000)
    rare[7] = 1                                      # a pixel lit in one image of 2,000,
    standardised[:, 2] = (rare - rare.mean()) / rare.std()   # standardised: 44.7 there
    assert np.abs(standardised).max() > 40 and not _warns(standardised)
    assert not _warns(rng.uniform(0, 1, (500, 4)))   # min-max scaled
    images = rng.integers(0, 256, (300, 28, 28)).astype(np.float32)
    assert _warns(images) and not _warns(images / 255)
    raw_units = standardised.copy()
    raw_units[:, 4] = 50 + 5 * raw_units[:, 4]       # one feature in raw units (an age)
    assert _warns(raw_units)


def test_digits_standardised_as_sklearn_says_does_not_warn():
    datasets = pytest.importorskip("sklearn.datasets", reason="needs the sklearn extra: "
                                   'pip install -e ".[sklearn]"')
    from sklearn.preprocessing import StandardScaler

    X, _ = datasets.load_digits(return_X_y=True)
    scaled = StandardScaler().fit_transform(X)
    assert np.abs(scaled).max() > 40                 # the rare pixel that fooled the old rule
    assert not _warns(scaled) and not _warns(X / 16)
    assert _warns(X)                                 # 0..16: a feature's RMS reaches 12.9


class _Terminal:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


@pytest.mark.parametrize("columns", [200, 60, 30])
def test_the_progress_bar_never_wraps_so_its_rate_is_read_whole(columns):
    from gpunet.training.loop.progress import ProgressBar, format_rate
    term = _Terminal()
    bar = ProgressBar(422, "epoch 1/20 ", stream=term, columns=columns)
    bar.update(120, loss="0.4123", acc="85.10%", rate=format_rate(24297))
    bar.update(240, loss="0.4001", acc="86.00%", rate=format_rate(24301))
    drawn = [part for part in term.text.split("\r") if part]
    assert all(len(part) <= columns - 1 for part in drawn)
    assert drawn[-1].startswith("epoch 1/20 ")
    if columns == 200:
        assert "[###" in drawn[-1] and drawn[-1].endswith("rate 24.3k samples/s")
    else:  # no bar graphic, and no number cut short: a field is shown whole or not at all
        assert "#" not in drawn[-1] and ("rate" not in drawn[-1]
                                         or drawn[-1].endswith("rate 24.3k samples/s"))


def test_a_dataloader_with_drop_last_averages_over_the_samples_it_trained_on(rng):
    X, y = _blobs(rng, n=110)
    model = _model()
    opt = gn.optim.SGD(model.parameters(), lr=0.0)   # no learning: every step sees one model
    loader = gn.DataLoader(X, y, batch_size=25, drop_last=True, shuffle=False)
    history = gn.fit(model, gn.CrossEntropyLoss(), opt, loader, epochs=1, verbose=False)
    assert opt.step_count == 4
    loss = gn.evaluate(model, X[:100], y[:100], gn.CrossEntropyLoss()).loss
    assert history["train_loss"][0] == pytest.approx(loss, rel=1e-5)


def test_class_names_are_public():
    names = gn.datasets.FASHION_MNIST_CLASSES
    assert len(names) == 10 and names[0] == "T-shirt/top" and names[9] == "Ankle boot"
    assert gn.datasets.class_names("fashion-mnist") == names
    assert gn.datasets.class_names("mnist")[7] == "7"
    assert gn.datasets.class_names("spirals") == ("0", "1")
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        gn.datasets.class_names("cifar")


def test_the_readme_set_up_command_installs_what_draws_curves_png():
    import re
    import tomllib
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    first = re.search(r"## Two commands\n+```bash\n(.*)\n", readme).group(1)
    extras = re.search(r'pip install -e "\.\[([\w,]+)\]"', first).group(1).split(",")
    optional = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    installed = [dep for extra in extras for dep in optional[extra]]
    assert "gpunet train" in first
    assert any(dep.startswith("matplotlib") for dep in installed), (
        f"the README's set-up installs {installed}: no matplotlib, so the first "
        f"`gpunet train` skips curves.png")


def test_gpunet_eval_names_fashion_mnist_classes(fashion_mnist, tmp_path, capsys):
    from gpunet.cli import main
    model = gn.Sequential(gn.Flatten(), gn.Linear(784, 10))
    gn.save(tmp_path / "c.npz", model, epoch=1, config={"dataset": "fashion-mnist", "seed": 0})
    assert main(["eval", str(tmp_path / "c.npz"), "--device", "cpu", "--no-download"]) == 0
    rows = capsys.readouterr().out.split("recall)\n")[1].splitlines()[1:]
    import re
    assert [re.match(r"\s*(.*?)\s+\d", row).group(1) for row in rows] == [
        name[:11] for name in gn.datasets.FASHION_MNIST_CLASSES]
