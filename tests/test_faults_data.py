"""Non-finite data: NaN or inf in float inputs or targets, for training or validation, is
refused before the first batch with the first bad row and column named (checked on the
device), instead of ending as a "lower the learning rate" divergence or a silent
``val_loss = nan``."""
import numpy as np
import pytest

import gpunet as gn


def _net(inputs=3, outputs=2):
    gn.manual_seed(0)
    return gn.Sequential(gn.Linear(inputs, 8), gn.Tanh(), gn.Linear(8, outputs))


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)).astype(np.float32), rng.integers(0, 2, n)


def _fit(model, train, backend=None, loss_fn=None, **kwargs):
    if backend is not None:
        model.to(backend)
        train = tuple(backend.asarray(a) for a in train)
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    return gn.fit(model, loss_fn or gn.CrossEntropyLoss(), opt, train, epochs=2,
                  batch_size=8, progress=False, verbose=False, **kwargs)


def test_nan_in_training_inputs_names_row_and_column_before_any_step(backend):
    X, y = _data()
    X[37, 1], X[39, 0] = np.nan, np.inf  # late rows: a per-batch check would take steps
    model = _net().to(backend)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"train inputs hold nan at row 37, column 1 "
                                         r"\(1 more non-finite values follow\); the data "
                                         r"must be finite") as info:
        _fit(model, (X, y), backend)
    assert "learning rate" not in str(info.value)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])  # no step was taken


def test_inf_in_a_validation_row_only_is_an_error(backend):
    X, y = _data()
    X_val, y_val = _data(10, seed=1)
    X_val[3, 2] = -np.inf
    val = (backend.asarray(X_val), backend.asarray(y_val))
    with pytest.raises(ValueError, match=r"val inputs hold -inf at row 3, column 2;"):
        _fit(_net(), (X, y), backend, val=val)


def test_nan_in_a_row_held_out_by_val_split_is_named_by_its_row_in_x():
    X, y = _data()
    held_out = int(np.random.default_rng(0).permutation(len(X))[0])  # fit's split, seed 0
    X[held_out, 0] = np.nan
    with pytest.raises(ValueError, match=rf"train inputs hold nan at row {held_out}, "
                                         rf"column 0;"):
        _fit(_net(), (X, y), val_split=0.25, seed=0)


def test_non_finite_targets_image_inputs_and_huge_finite_values():
    X, _ = _data()
    targets = X[:, :1].copy()
    targets[5, 0] = np.nan
    with pytest.raises(ValueError, match=r"train targets hold nan at row 5;"):
        _fit(_net(outputs=1), (X, targets), loss_fn=gn.MSELoss())
    images = np.zeros((6, 2, 2), np.float32)
    images[4, 1, 0] = np.inf  # column: the position in the flattened sample
    model = gn.Sequential(gn.Flatten(), gn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"X hold inf at row 4, column 2;"):
        gn.evaluate(model, images, np.zeros(6, np.int64), gn.CrossEntropyLoss())
    huge = np.full((4, 2), 1e308)  # their float64 sum overflows, yet every value is finite
    model = gn.Sequential(gn.Linear(2, 2), dtype="float64")
    with np.errstate(over="ignore", invalid="ignore"):
        assert gn.evaluate(model, huge, np.zeros(4, np.int64)).accuracy is not None


class _NaNWhenEvaluating(gn.CrossEntropyLoss):
    """Finite in training, NaN in evaluation mode (validation)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, backend, logits, labels, grad):
        loss = super().forward(backend, logits, labels, grad)
        return loss if self.model.training else loss * np.nan


def test_a_non_finite_validation_loss_stops_training(tmp_path):
    X, y = _data()
    model = _net()
    path = tmp_path / "run.npz"
    with pytest.raises(gn.NonFiniteLossError,
                       match=r"the validation loss became nan at epoch 1 \(the training "
                             r"loss was finite\)") as info:
        _fit(model, (X, y), loss_fn=_NaNWhenEvaluating(model), val=_data(10, seed=1),
             checkpoint=path)
    assert info.value.epoch == 1
    assert not path.exists()  # the epoch was not saved
