"""Input handling shared by ``fit``, ``evaluate`` and ``predict``: data on the model's device,
checked once before the first batch (finite values, class labels within the model's outputs),
uint8 images scaled to floats batch by batch, and evaluation mode."""
from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np

from ...backend import backend_of
from ...data.loader import DataLoader
from ...ops.workspace import Workspace

#: A feature whose root mean square passes this looks unscaled (fit warns): images in 0..255
#: (about 120), raw units such as wine's proline (810); standardised or [0, 1] features stay
#: at or below about 1, whatever their rare extremes (a standardised pixel of sklearn's
#: digits reaches 42.4 once in 1,797 samples: its root mean square is 1).
UNSCALED = 10.0
UNSCALED_ROWS = 16384  # the warning looks at most at this many rows, evenly spaced
_CHUNK_ROWS = 2048


def pair(data, name):
    """``data`` as an ``(X, y)`` pair (a :class:`DataLoader`: its arrays), or a TypeError
    naming ``name``."""
    if isinstance(data, DataLoader):
        return data.X, data.y
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name} must be a pair (X, y) of arrays or a gpunet.DataLoader, got "
                        f"{type(data).__name__}")
    return data


def batching(train, batch_size, default):
    """``(batch_size, shuffle, drop_last)`` of fit's epochs: a DataLoader given as ``train``
    brings its own; a ``batch_size`` other than ``default`` and the loader's is an error."""
    if not isinstance(train, DataLoader):
        return batch_size, True, False
    if batch_size not in (default, train.batch_size):
        raise ValueError(f"train is a DataLoader with batch_size={train.batch_size}, and fit "
                         f"got batch_size={batch_size!r}: leave fit's batch_size out (the "
                         f"loader's is used) or make the two agree")
    return train.batch_size, train.shuffle, train.drop_last


def warn_if_unscaled(X, what):
    """Warn when a float feature looks unscaled: its root mean square over the samples is
    beyond :data:`UNSCALED` (images in 0..255 train to chance). Per feature, so a rare large
    value of a standardised feature does not warn. Looks at up to :data:`UNSCALED_ROWS`
    evenly spaced rows; one host synchronisation per call of fit."""
    if X.dtype.kind != "f" or X.size == 0:
        return
    rows = X[::-(-len(X) // UNSCALED_ROWS)].reshape(-1, X[0].size)
    xp = backend_of(X).xp
    squares = xp.zeros(rows.shape[1], dtype=np.float64)
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[start:start + _CHUNK_ROWS]
        squares += (chunk * chunk).sum(axis=0, dtype=np.float64)
    rms = xp.sqrt(squares / len(rows))
    feature = int(rms.argmax())
    largest = float(rms[feature])
    if largest > UNSCALED:
        warnings.warn(
            f"{what} inputs look unscaled: feature {feature} has a root mean square of "
            f"{largest:.4g}, and a network trains on features of order 1. Scale images in "
            f"0..255 to [0, 1] (X / 255, gpunet.datasets.to_float, or pass the uint8 images, "
            f"which fit scales itself); standardise other features (mean 0, standard "
            f"deviation 1: sklearn's StandardScaler)", UserWarning, stacklevel=3)


class FloatInput:
    """Batches in the model's float dtype: uint8 images are divided by 255 (as
    :func:`gpunet.datasets.to_float` does) into a reused device buffer per batch shape."""

    def __init__(self, model):
        self.model = model
        self._workspace = Workspace(model.backend.xp)

    def __call__(self, xb):
        if xb.dtype != np.uint8:
            return xb  # floating input is used (or cast) by the model itself
        out = self._workspace.get("input", xb.shape, self.model.dtype)
        self.model.backend.xp.divide(xb, 255, out=out, dtype=self.model.dtype)
        return out


def on_device(model, X, y=None):
    """``X`` (and ``y``) on the model's device: at least one sample, as many labels."""
    backend = model.backend
    X = backend.asarray(X)
    if X.ndim == 0 or len(X) == 0:
        raise ValueError(f"X must hold at least one sample, got "
                         f"{'a 0-d array' if X.ndim == 0 else '0 samples'}")
    if y is not None:
        y = backend.asarray(y)
        if len(X) != len(y):
            raise ValueError(f"X and y must have the same number of samples, got {len(X)} "
                             f"and {len(y)}")
    return X, y


@contextlib.contextmanager
def evaluation_mode(model):
    """Evaluation mode inside the block; the model's previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def check_class_labels(model, loss_fn, X, y, what):
    """For a loss that declares ``targets = "classes"``, check all of ``y`` against the model's output
    width (found by one evaluation-mode forward pass of ``X[:1]``) before any batch runs:
    one host sync. A device backend flags bad labels and ``check_errors`` raises them."""
    if getattr(loss_fn, "targets", None) != "classes" or y.ndim != 1 or y.dtype.kind not in "iu":
        return
    with evaluation_mode(model):
        outputs = model(FloatInput(model)(X[:1]))
    if outputs.ndim not in (2, 3):  # a plain model's (batch, classes), a stack's (n, ...)
        return  # the loss itself names the wrong shape
    try:
        model.backend.ops.check_labels(y, outputs.shape[-1])
        model.backend.ops.check_errors()
    except ValueError as exc:
        raise ValueError(f"{what}: {exc} (the model has {outputs.shape[-1]} "
                         f"outputs)") from None


def check_finite(model, a, what):
    """Raise ValueError naming the first row and column of the float array ``a`` (on the
    model's device) that holds NaN or inf: one reduction and one host sync when all is
    finite. A column is a position in a sample flattened to one row."""
    if a.dtype.kind != "f":
        return
    if math.isfinite(float(a.sum(dtype=np.float64))):  # float32 data cannot overflow it
        return
    xp = model.backend.xp
    bad = ~xp.isfinite(a.reshape(len(a), -1))
    first = int(bad.argmax())
    row, column = divmod(first, bad.shape[1])
    if not bool(bad[row, column]):
        return  # only the float64 sum of huge float64 values overflowed
    value = float(a.reshape(len(a), -1)[row, column])
    count = int(bad.sum())
    others = f" ({count - 1:,} more non-finite values follow)" if count > 1 else ""
    where = f"row {row}" + (f", column {column}" if bad.shape[1] > 1 else "")
    raise ValueError(f"{what} hold {value} at {where}{others}; the data must be finite "
                     f"(no NaN or inf): drop or fill in those values before training")


def checked_sample_weight(model, loss_fn, sample_weight, num_samples):
    """``fit``'s ``sample_weight`` on the model's device in its dtype, checked: one finite,
    non-negative number per sample, not all zero, and a loss that takes them."""
    if not getattr(loss_fn, "sample_weights", False):
        raise TypeError(f"{type(loss_fn).__name__} does not take sample weights; fit's "
                        f"sample_weight needs CrossEntropyLoss, BCEWithLogitsLoss or MSELoss")
    weights = model.backend.asarray(sample_weight)
    if weights.shape != (num_samples,):
        raise ValueError(f"sample_weight must hold one weight per training sample, shape "
                         f"({num_samples},), got {tuple(weights.shape)}")
    if weights.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold numbers, got {weights.dtype}")
    weights = weights.astype(model.dtype)
    check_finite(model, weights, "sample_weight")
    negative = model.backend.xp.flatnonzero(weights < 0)
    if len(negative):
        first = int(negative[0])
        raise ValueError(f"sample_weight must be >= 0, got {float(weights[first])} at "
                         f"index {first}")
    if not float(weights.sum()) > 0:
        raise ValueError("sample_weight must not be all zero (no sample would count)")
    return weights


def weighted_batches(loader, y, weights):
    """``(xb, yb, wb)`` batches from ``loader`` over ``(X, row indices)``: the labels and
    weights of each batch gathered by its rows."""
    for xb, rows in loader:
        yield xb, y[rows], weights[rows]


def checked(model, loss_fn, X, y, what):
    """``(X, y)`` on the model's device, checked once before the first batch: finite
    float values, class labels within the model's outputs."""
    X, y = on_device(model, X, y)
    check_finite(model, X, f"{what} inputs")
    check_finite(model, y, f"{what} targets")
    check_class_labels(model, loss_fn, X, y, f"{what} labels")
    return X, y
