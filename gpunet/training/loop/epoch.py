"""One epoch of ``fit``: its steps (eager, or through the static step's runner), the
per-step losses and correct counts kept on the device and read in chunks (where a NaN or
infinite loss is found; a stack's steps record one column per model, ``nn/stack.py``), the
progress bar and the per-step callbacks."""
from __future__ import annotations

import math
import time

import numpy as np

from ...backend import to_numpy
from ...nn.boundary import inside
from ...nn.stack import models_of
from .history import format_numbers
from .progress import ProgressBar, format_rate


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite (``epoch``, ``step``)."""

    def __init__(self, message, epoch, step):
        super().__init__(message)
        self.epoch = epoch
        self.step = step


class EpochMeter:
    """Per-step losses and correct counts (recorded by the eager loop, or by the static step
    into ``runner``'s buffers) of a model, or of the ``models`` models of a stack.

    A plain model whose loss is not finite raises :class:`NonFiniteLossError`; a stack's
    model marks itself in :attr:`diverged` (``fit`` stops it) and the others go on."""

    def __init__(self, loader, loss_fn, epoch, runner=None, models=None):
        xp = loader.backend.xp
        self.backend = loader.backend
        self.loss_fn = loss_fn
        self.epoch = epoch
        self.models = models
        shape = (len(loader),) if models is None else (len(loader), models)
        self.counts_correct = hasattr(loss_fn, "last_correct")
        if runner is not None:
            self.losses, self.correct = runner.epoch.losses, runner.epoch.hits
        else:
            self.losses = xp.zeros(shape, dtype=np.float64)
            self.correct = xp.zeros(shape, dtype=np.int64) if self.counts_correct else None
        self.sizes = loader.step_rows()  # this rank's rows, when data-parallel
        self.read_steps = 0
        self.loss_sum = np.zeros(shape[1:])
        self.correct_sum = np.zeros(shape[1:], dtype=np.int64)
        self.diverged = np.zeros(shape[1:], dtype=bool)

    def record(self, step, loss):
        self.losses[step] = loss
        if self.counts_correct:
            self.correct[step] = self.loss_fn.last_correct

    def read(self, done):
        """Bring steps ``[read_steps, done)`` to the host; a plain model's non-finite loss
        raises, a stack's marks the model :attr:`diverged`."""
        start, self.read_steps = self.read_steps, done
        self.backend.ops.check_errors()
        chunk = to_numpy(self.losses[start:done])
        finite = np.isfinite(chunk)
        if self.models is None and not finite.all():
            first = int(np.flatnonzero(~finite)[0])
            step = start + first + 1
            raise NonFiniteLossError(
                f"the training loss became {chunk[first]} at epoch {self.epoch}, step {step} "
                f"of {len(self.sizes)}", self.epoch, step)
        self.diverged |= ~finite.all(axis=0)
        self.loss_sum = self.loss_sum + chunk.T @ self.sizes[start:done]
        if self.counts_correct:
            self.correct_sum = self.correct_sum + to_numpy(self.correct[start:done]).sum(axis=0)

    def summary(self, parallel=None):
        """``(mean loss, accuracy)`` of the steps read (over every rank with ``parallel``):
        floats, or arrays of one value per model for a stack."""
        loss_sum, correct_sum = self.loss_sum, self.correct_sum
        seen = int(self.sizes[:self.read_steps].sum())
        if parallel is not None:
            loss_sum, correct_sum, seen = parallel.reduce(float(loss_sum), int(correct_sum),
                                                          seen)
        accuracy = correct_sum / seen if self.counts_correct else None
        if self.models is None:
            return float(loss_sum) / seen, None if accuracy is None else float(accuracy)
        return loss_sum / seen, accuracy


def _eager_steps(model, loss_fn, optimizer, batches, to_input, meter, syncs, clip):
    """The steps of an epoch as separate calls; yields each step's index when done.
    ``batches``: ``(xb, yb)`` or ``(xb, yb, sample_weight)``; ``syncs``: per step, the
    gradient all-reduce of data parallelism (or None); ``clip``: the gradient clipping."""
    for step, (xb, yb, *weights) in enumerate(batches):
        loss = loss_fn(model(to_input(xb)), yb, *weights)
        model.backward(loss_fn.backward(), input_grad=False)
        if syncs is not None:
            syncs[step]()
        if clip is not None:
            clip()
        optimizer.step()
        meter.record(step, loss)
        yield step


def _static_steps(runner):
    """The steps of an epoch through the static (on the GPU: captured) step."""
    runner.start_epoch()
    for step in range(runner.count):
        runner.run(step)
        yield step


def _shown(value):
    """A number for the progress bar: a stack's mean over its models with finite values."""
    if not isinstance(value, np.ndarray):
        return value
    finite = value[np.isfinite(value)]
    return float(finite.mean()) if finite.size else math.nan


def train_epoch(model, loss_fn, optimizer, loader, to_input, epoch, epochs, *, progress,
                runner, parallel, callbacks, clip=None, batches=None):
    """Train one epoch (``epoch`` of ``epochs``, from 1); return ``(mean loss, accuracy)``
    over every rank. ``batches`` replaces iterating ``loader`` (e.g. with sample weights)."""
    meter = EpochMeter(loader, loss_fn, epoch, runner, models_of(model))
    bar = ProgressBar(len(loader), f"epoch {epoch}/{epochs} ", enabled=progress)
    started = time.perf_counter()
    model.train()
    syncs = None if parallel is None else parallel.eager_hooks()
    ranks = 1 if parallel is None else parallel.size  # the bar shows the job's rate
    steps = (_static_steps(runner) if runner is not None
             else _eager_steps(model, loss_fn, optimizer, loader if batches is None else batches,
                               to_input, meter, syncs, clip))
    per_step = callbacks.per_step
    try:
        with inside():  # the library's own calls: buffers reused, no copies handed out
            for step in steps:
                if per_step:
                    callbacks.step_done(epoch, step + 1, meter.losses[step])
                if bar.due():
                    meter.read(step + 1)
                    loss_mean, accuracy = meter.summary()
                    rate = ranks * meter.sizes[:step + 1].sum() / (time.perf_counter()
                                                                   - started)
                    bar.update(step + 1, **format_numbers(_shown(loss_mean), _shown(accuracy)),
                               rate=format_rate(rate))
        meter.read(len(loader))
    finally:
        bar.close()
    return meter.summary(parallel)
