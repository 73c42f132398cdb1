"""Early stopping for ``fit``: the best epoch by the monitored loss (validation, else
training), its weights kept with a ``patience``, and restored at the end."""
from __future__ import annotations

import math

import numpy as np

from ...checks import check_positive_int


class EarlyStopping:
    """Track the best epoch by the monitored loss (validation, else training) and, with a
    ``patience``, keep a copy of its weights."""

    def __init__(self, patience, model, history, saved_best_state):
        self.patience = None if patience is None else check_positive_int(patience, "patience")
        self.best_epoch, self.best_loss, self.best_state = 0, math.inf, None
        losses = [_monitored(r) for r in history]
        if not losses or self.patience is None:
            return
        best = int(np.argmin(losses)) if saved_best_state is not None else -1
        # without saved best weights, the current ones (the last epoch's) count as the best
        self.best_epoch, self.best_loss = history.records[best]["epoch"], losses[best]
        self.best_state = model.state_dict() if saved_best_state is None else saved_best_state

    def update(self, model, record):
        """Note a finished epoch; True when ``patience`` epochs passed without improvement."""
        loss = _monitored(record)
        if loss < self.best_loss:
            self.best_epoch, self.best_loss = record["epoch"], loss
            if self.patience is not None:
                self.best_state = model.state_dict()
        return self.patience is not None and record["epoch"] - self.best_epoch >= self.patience

    def state_to_save(self, epoch):
        """The best weights when they differ from the model's weights after ``epoch``."""
        return self.best_state if self.best_epoch != epoch else None

    def restore(self, model, epoch):
        """Load the best weights unless the model already holds them; True if it did."""
        if self.state_to_save(epoch) is None:
            return False
        model.load_state_dict(self.best_state)
        return True


def _monitored(record):
    return record["val_loss"] if record["val_loss"] is not None else record["train_loss"]
