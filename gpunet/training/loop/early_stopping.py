"""Early stopping for ``fit``: the best epoch of each model by the monitored loss (validation,
else training), a copy of its weights with a ``patience``, and which models still train.

A plain model is one model. The models of a stack (``nn/stack.py``) stop one by one: after
``patience`` epochs without a lower loss, or when their loss is no longer finite. A stopped
model gets its best weights back at once and is frozen (``fit`` gives it a learning rate of 0,
which leaves SGD's and Adam's updates exactly zero); the others train on.
"""
from __future__ import annotations

import math

import numpy as np

from ...backend import to_numpy
from ...checks import check_positive_int
from ...nn.stack import Stack


def monitored(record):
    """The loss early stopping watches: validation loss, else training loss."""
    return record["val_loss"] if record["val_loss"] is not None else record["train_loss"]


class EarlyStopping:
    """The best epochs and, with a ``patience``, their weights, for ``model`` (a stack: per
    model) trained so far as ``histories`` say (one History per model; a resumed run's
    ``saved_best_state`` holds the best weights where they differ from the model's)."""

    def __init__(self, patience, model, histories, saved_best_state):
        self.patience = None if patience is None else check_positive_int(patience, "patience")
        self.stack = isinstance(model, Stack)
        count = len(histories)
        self.best_epoch = np.zeros(count, dtype=np.int64)
        self.best_loss = np.full(count, math.inf)
        self.active = np.array([not h.records or math.isfinite(monitored(h.records[-1]))
                                for h in histories])
        if len({len(h) for h in histories}) > 1:  # a model that stopped earlier stays stopped
            self.active &= np.array([len(h) == max(map(len, histories)) for h in histories])
        self.diverged = np.zeros(count, dtype=bool)  # stopped by a loss no longer finite
        self.best_state = None
        if self.patience is None or not any(len(h) for h in histories):
            return
        for i, history in enumerate(histories):
            losses = np.array([monitored(r) for r in history], dtype=np.float64)
            # without saved best weights, the current ones (the last epoch's) count as the best
            finite = np.isfinite(losses)
            best = int(np.argmin(np.where(finite, losses, np.inf))) \
                if saved_best_state is not None and finite.any() else -1
            self.best_epoch[i], self.best_loss[i] = history.records[best]["epoch"], losses[best]
        self.best_state = model.state_dict() if saved_best_state is None else saved_best_state

    def update(self, model, record):
        """Note a finished epoch; returns the models that stop now (a plain model: True or
        False; a stack: an array of model indices)."""
        losses = np.atleast_1d(np.asarray(monitored(record), dtype=np.float64))
        epoch = record["epoch"]
        improved = self.active & (losses < self.best_loss)
        self.best_epoch[improved], self.best_loss[improved] = epoch, losses[improved]
        if self.patience is not None and improved.any():
            self._keep(model, improved)
        stop = self.active & ~np.isfinite(losses)
        self.diverged |= stop
        if self.patience is not None:
            stop |= self.active & (epoch - self.best_epoch >= self.patience)
        self.active &= ~stop
        if not self.stack:
            return bool(stop[0])
        stopped = np.flatnonzero(stop)
        self._restore(model, stopped)
        return stopped

    def _keep(self, model, which):
        """Copy the weights of the models ``which`` (a mask) as their best."""
        if self.best_state is None or not self.stack:
            self.best_state = model.state_dict()
            return
        for name, p in model.named_parameters():
            self.best_state[name][which] = to_numpy(p.data)[which]

    def _restore(self, model, which):
        """Give the models ``which`` (indices) their best weights, where kept."""
        if self.best_state is None or not len(which):
            return
        for name, p in model.named_parameters():
            p.data[which] = model.backend.asarray(self.best_state[name][which],
                                                  dtype=p.data.dtype)

    def frozen(self, lr):
        """``lr`` with the learning rate of every stopped model of a stack set to 0."""
        return lr if not self.stack else np.where(self.active, lr, 0.0)

    def state_to_save(self, epoch):
        """The best weights when they differ from the model's weights after ``epoch`` (a
        stack's stopped models hold theirs already)."""
        differs = self.best_epoch != epoch
        if self.stack:
            differs &= self.active
        return self.best_state if differs.any() else None

    def restore(self, model, epoch):
        """Load the best weights of the models still training unless they hold them; True
        if any did."""
        if self.state_to_save(epoch) is None:
            return False
        if not self.stack:
            model.load_state_dict(self.best_state)
            return True
        self._restore(model, np.flatnonzero(self.active & (self.best_epoch != epoch)))
        return True
