"""``History``: the per-epoch records of a training run, as JSON or CSV (files replaced
atomically), and their one-line display."""
from __future__ import annotations

import csv
import io
import json

import numpy as np

from ..run_files.atomic import write_text

COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
           "seconds", "samples_per_s")


class History:
    """One record (a dict keyed by :data:`COLUMNS`) per finished epoch; ``None`` marks a
    value that does not apply (no validation set, no accuracy for regression)."""

    def __init__(self, records=()):
        self.records = [dict(r) for r in records]

    def append(self, record):
        self.records.append({k: record.get(k) for k in COLUMNS})

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __getitem__(self, column):
        """The values of one column over the epochs, e.g. ``history["val_loss"]``."""
        if column not in COLUMNS:
            raise KeyError(f"unknown history column {column!r}; expected one of {COLUMNS}")
        return [r[column] for r in self.records]

    @property
    def history(self) -> dict:
        """Keras's ``History.history``: a dict of lists, one value per epoch, under Keras's
        names: ``loss`` and ``accuracy`` (training), ``val_loss`` and ``val_accuracy``, each
        present when it applies (``pd.DataFrame(history.history).plot()`` draws the curves).
        Every column by its own name: ``history["lr"]``, ``history.records``."""
        names = {"loss": "train_loss", "accuracy": "train_accuracy", "val_loss": "val_loss",
                 "val_accuracy": "val_accuracy"}
        return {keras: self[column] for keras, column in names.items()
                if any(value is not None for value in self[column])}

    def to_json(self, path=None):
        """The records as a JSON list (written to ``path`` when given, atomically)."""
        text = json.dumps(self.records, indent=1)
        if path is not None:
            write_text(path, text + "\n", what="history file")
        return text

    def to_csv(self, path=None):
        """The records as CSV with a header row (written to ``path`` when given,
        atomically)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.records)
        if path is not None:
            write_text(path, buf.getvalue(), what="metrics file")
        return buf.getvalue()

    def __repr__(self):
        return f"History({len(self)} epochs)"


def format_numbers(loss, accuracy):
    """``{"loss": ..., "acc": ...}`` as display strings (no ``acc`` when it is None)."""
    numbers = {"loss": f"{loss:.4f}"}
    if accuracy is not None:
        numbers["acc"] = f"{100 * accuracy:.2f}%"
    return numbers


def format_epoch(record, epochs):
    """One line summarising an epoch's record."""
    def scores(prefix, loss, accuracy):
        return prefix + "  ".join(f"{k} {v}" for k, v in format_numbers(loss, accuracy).items())

    parts = [f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}", f"lr {record['lr']:.4g}",
             scores("train ", record["train_loss"], record["train_accuracy"])]
    if record["val_loss"] is not None:
        parts.append(scores("val ", record["val_loss"], record["val_accuracy"]))
    parts.append(f"{record['seconds']:.2f} s  {record['samples_per_s']:,.0f} samples/s")
    return "  |  ".join(parts)


def model_record(record, model):
    """Model ``model``'s record of an epoch of a stack, whose per-model values are arrays."""
    return {k: float(v[model]) if isinstance(v, np.ndarray) else v for k, v in record.items()}


def format_models_epoch(record, epochs, active):
    """One line summarising an epoch of a stack: the models still training (``active``, a
    mask), their median training loss, and the best of them by validation accuracy (else by
    validation or training loss)."""
    models = len(active)
    training = np.flatnonzero(active)
    head = [f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}",
            f"{models} models" + (f", {len(training)} training" if len(training) < models
                                  else "")]
    if not len(training):
        return "  |  ".join(head)
    middle = np.median(record["train_loss"][training])
    parts = head + [f"train loss {middle:.4f} (median)"]
    score, name = _best_by(record)
    best = training[np.argmax(score[training])]
    shown = format_numbers(record[f"{name}_loss"][best],
                           None if record[f"{name}_accuracy"] is None
                           else record[f"{name}_accuracy"][best])
    parts.append(f"best: model {best} ({name} " +
                 "  ".join(f"{k} {v}" for k, v in shown.items()) + ")")
    parts.append(f"{record['seconds']:.2f} s  {record['samples_per_s']:,.0f} samples/s")
    return "  |  ".join(parts)


def _best_by(record):
    """Per-model scores (higher is better) and the name of the split they come from."""
    name = "val" if record["val_loss"] is not None else "train"
    accuracy = record[f"{name}_accuracy"]
    if accuracy is not None:
        return np.nan_to_num(accuracy, nan=-np.inf), name
    return -np.nan_to_num(record[f"{name}_loss"], nan=np.inf), name
