"""Evaluation: :func:`evaluate` and :func:`predict` in evaluation mode over device-resident
batches, the helpers the training loop shares with them (input scaling, label and
finiteness checks), and the confusion matrix."""
from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import numpy as np

from ..data.loader import resolve_batch_size
from ..nn.losses import CrossEntropyLoss, NLLLoss

EVAL_BATCH_SIZE = 1024


class Evaluation(NamedTuple):
    """Mean loss (None without a loss function) and accuracy (None unless the targets are
    class labels) over a dataset."""

    loss: float | None
    accuracy: float | None


class FloatInput:
    """Batches in the model's float dtype: uint8 images are divided by 255 (as
    :func:`gpunet.datasets.to_float` does) into one reused device buffer."""

    def __init__(self, model):
        self.model = model
        self._buffer = None

    def __call__(self, xb):
        if xb.dtype != np.uint8:
            return xb  # floating input is used (or cast) by the model itself
        buf = self._buffer
        if buf is None or buf.shape[1:] != xb.shape[1:] or len(buf) < len(xb):
            buf = self._buffer = self.model.backend.xp.empty(xb.shape, self.model.dtype)
        out = buf[:len(xb)]
        self.model.backend.xp.divide(xb, 255, out=out, dtype=self.model.dtype)
        return out


def on_device(model, X, y=None):
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


def _batches(n, batch_size):
    size = resolve_batch_size(batch_size, n, drop_last=False)
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _is_class_labels(outputs, y):
    return outputs.ndim == 2 and y.ndim == 1 and y.dtype.kind in "iu"


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
    """For a loss on integer class labels, check all of ``y`` against the model's output
    width (found by one evaluation-mode forward pass of ``X[:1]``) before any batch runs:
    one host sync. A device backend flags bad labels and ``check_errors`` raises them."""
    if not isinstance(loss_fn, (CrossEntropyLoss, NLLLoss)) or y.ndim != 1 \
            or y.dtype.kind not in "iu":
        return
    with evaluation_mode(model):
        outputs = model(FloatInput(model)(X[:1]))
    if outputs.ndim != 2:
        return  # the loss itself names the wrong shape
    try:
        model.backend.ops.check_labels(y, outputs.shape[1])
        model.backend.ops.check_errors()
    except ValueError as exc:
        raise ValueError(f"{what}: {exc} (the model has {outputs.shape[1]} "
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


def _outputs(model, X, batch_size):
    """``(start, stop, outputs)`` per batch of ``X`` (outputs are reused buffers)."""
    to_input = FloatInput(model)
    for start, stop in _batches(len(X), batch_size):
        yield start, stop, model(to_input(X[start:stop]))


def evaluate(model, X, y, loss_fn=None, batch_size=EVAL_BATCH_SIZE) -> Evaluation:
    """Mean loss (with ``loss_fn``) and accuracy (for integer class labels) of ``model`` on
    ``(X, y)``, in evaluation mode; the model's previous mode is restored afterwards.
    Class labels outside the model's outputs, and NaN or inf in float ``X`` or ``y``, raise
    ValueError before any batch runs."""
    X, y = on_device(model, X, y)
    check_finite(model, X, "X")
    check_finite(model, y, "y")
    check_class_labels(model, loss_fn, X, y, "y")
    return evaluate_on_device(model, X, y, loss_fn, batch_size)


def evaluate_on_device(model, X, y, loss_fn, batch_size):
    """:func:`evaluate` of ``(X, y)`` already on the device and checked (``fit``'s validation)."""
    xp = model.backend.xp
    loss_sum = xp.zeros((), dtype=np.float64)
    correct = xp.zeros((), dtype=np.int64)
    classes = True
    with evaluation_mode(model):
        for start, stop, outputs in _outputs(model, X, batch_size):
            yb = y[start:stop]
            classes = _is_class_labels(outputs, yb)
            if loss_fn is not None:
                loss_sum += loss_fn(outputs, yb) * (stop - start)
            batch_correct = getattr(loss_fn, "last_correct", None)
            if batch_correct is None and classes:
                batch_correct = xp.count_nonzero(outputs.argmax(axis=1) == yb)
            if batch_correct is not None:
                correct += batch_correct
    model.backend.ops.check_errors()
    loss = float(loss_sum) / len(X) if loss_fn is not None else None
    return Evaluation(loss, int(correct) / len(X) if classes else None)


def predict(model, X, batch_size=EVAL_BATCH_SIZE):
    """The model's outputs for ``X`` (evaluation mode), one array on the model's device."""
    X, _ = on_device(model, X)
    result = None
    with evaluation_mode(model):
        for start, stop, outputs in _outputs(model, X, batch_size):
            if result is None:
                result = model.backend.xp.empty((len(X),) + outputs.shape[1:], outputs.dtype)
            result[start:stop] = outputs
    return result


def confusion_matrix(true, predicted, num_classes):
    """Counts ``[true class, predicted class]``."""
    flat = np.bincount(true * num_classes + predicted, minlength=num_classes ** 2)
    return flat.reshape(num_classes, num_classes)


def format_confusion(matrix, classes):
    """The matrix as text: one row per true class, one column per predicted class."""
    names = [c[:11] for c in classes]
    label = max(len(n) for n in names)
    width = max(len(str(matrix.max())), 4)
    head = " " * label + "  " + " ".join(f"{i:>{width}}" for i in range(len(names)))
    rows = [f"{n:>{label}}  " + " ".join(f"{v:>{width}}" for v in row)
            + f"  {100 * row[i] / max(row.sum(), 1):5.1f}%"
            for i, (n, row) in enumerate(zip(names, matrix))]
    return ("confusion matrix (rows: true class, columns: predicted class index; "
            "last column: recall)\n" + "\n".join([head] + rows))
