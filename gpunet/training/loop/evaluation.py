"""Evaluation: :func:`evaluate` and :func:`predict` in evaluation mode over device-resident
batches, and the confusion matrix. Input handling shared with ``fit`` is in ``inputs.py``."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...backend import to_numpy
from ...data.loader import resolve_batch_size
from ...nn.boundary import inside
from ...nn.stack import models_of
from .inputs import FloatInput, check_class_labels, check_finite, evaluation_mode, on_device

EVAL_BATCH_SIZE = 1024


class Evaluation(NamedTuple):
    """Mean loss (None without a loss function) and accuracy (None unless the targets are
    class labels, or the loss counts correct predictions, as BCEWithLogitsLoss does: a logit
    above 0 predicts 1) over a dataset. For a stack, arrays of one value per model."""

    loss: float | np.ndarray | None
    accuracy: float | np.ndarray | None


def _batches(n, batch_size):
    size = resolve_batch_size(batch_size, n, drop_last=False)
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _is_class_labels(outputs, y):
    """Whether ``y`` holds class labels of the (batch, classes) outputs (a stack's: (n,
    batch, classes))."""
    return outputs.ndim in (2, 3) and y.ndim == 1 and y.dtype.kind in "iu"


def _outputs(model, X, batch_size):
    """``(start, stop, outputs)`` per batch of ``X`` (outputs are reused buffers: each is
    used before the next batch runs)."""
    to_input = FloatInput(model)
    for start, stop in _batches(len(X), batch_size):
        with inside():
            outputs = model(to_input(X[start:stop]))
        yield start, stop, outputs


def evaluate(model, X, y, loss_fn=None, batch_size=EVAL_BATCH_SIZE) -> Evaluation:
    """Mean loss (with ``loss_fn``) and accuracy (for integer class labels) of ``model`` on
    ``(X, y)``, in evaluation mode; the model's previous mode is restored afterwards. For a
    stack (``gn.stack``), one loss and accuracy per model.
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
    models = models_of(model)
    per_model = () if models is None else (models,)
    loss_sum = xp.zeros(per_model, dtype=np.float64)
    correct = xp.zeros(per_model, dtype=np.int64)
    counted = True  # whether every batch's correct predictions were counted
    with evaluation_mode(model):
        for start, stop, outputs in _outputs(model, X, batch_size):
            yb = y[start:stop]
            batch_correct = None
            if loss_fn is not None:
                loss_sum += loss_fn(outputs, yb) * (stop - start)
                batch_correct = getattr(loss_fn, "last_correct", None)
            if batch_correct is None and _is_class_labels(outputs, yb):
                batch_correct = xp.count_nonzero(outputs.argmax(axis=-1) == yb, axis=-1)
            if batch_correct is None:
                counted = False
            else:
                correct += batch_correct
    model.backend.ops.check_errors()
    host = (lambda a: to_numpy(a)) if models is not None else (lambda a: a.item())
    loss = host(loss_sum) / len(X) if loss_fn is not None else None
    return Evaluation(loss, host(correct) / len(X) if counted else None)


def predict(model, X, batch_size=EVAL_BATCH_SIZE):
    """The model's outputs for ``X`` (evaluation mode), one array on the model's device
    (a stack's: (n, len(X), outputs), each model's outputs)."""
    X, _ = on_device(model, X)
    result = None
    lead = 0 if models_of(model) is None else 1  # the samples' axis of the outputs
    with evaluation_mode(model):
        for start, stop, outputs in _outputs(model, X, batch_size):
            if result is None:
                shape = outputs.shape[:lead] + (len(X),) + outputs.shape[lead + 1:]
                result = model.backend.xp.empty(shape, outputs.dtype)
            result[(slice(None),) * lead + (slice(start, stop),)] = outputs
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
