"""The :class:`StepRunner`: the static steps of one training run (``step.py``), captured as
CUDA graphs on the GPU (``capture.py``), and its evaluation batches run the same way."""
from __future__ import annotations

import numpy as np

from ...backend import to_numpy
from .capture import CapturedStep, DeviceClock, GraphChoice
from ..loop.inputs import evaluation_mode
from ...nn.stack import models_of
from .step import EpochBuffers, StaticEvalStep, StaticStep, static_step_problem


def _plain(loss_fn) -> bool:
    """A CrossEntropyLoss without class weights or smoothing (or none given: the same)."""
    return loss_fn is None or (loss_fn.weight is None and not loss_fn.label_smoothing)


class StepRunner:
    """The static steps of a training run over ``(X, y)``: one for full batches, one for a
    smaller last batch. With a CUDA ``stream`` they are captured on it (every other op of
    the run must be issued on that stream too); without, they run as they are. ``epoch``
    holds what the epoch's steps record.

    Data parallelism: with a :class:`~gpunet.data.shard.Shard` ``shard`` the steps walk this
    rank's share of each global batch of ``batch_size``, and ``sync(weight)`` (the gradient
    all-reduce) returns what each step calls between backward and the update; on the GPU it
    is captured with the step, on the capture stream. ``strict`` (``graph="on"``): every
    step is captured and a recording that fails raises; otherwise (``graph="auto"``) the
    timing of the first steps decides (see ``capture.py``); ``clock`` times them and
    ``agree`` makes the ranks of a data-parallel job decide alike. ``clip``: fit's gradient
    clipping, run in each step after the all-reduce. ``loss_fn``: the CrossEntropyLoss
    (class weights, label smoothing) of training and evaluation (default: a plain one)."""

    def __init__(self, model, optimizer, X, y, batch_size, steps, stream=None, *, shard=None,
                 sync=None, strict=True, clock=None, agree=None, clip=None, loss_fn=None,
                 groups=None, bootstrap=False):
        backend = model.backend
        self.model, self.stream, self.loss_fn = model, stream, loss_fn
        self.shuffle = batch_size < len(X)
        if shard is None:
            rows = [batch_size] * (steps - 1) + [len(X) - (steps - 1) * batch_size]
            weights = [1.0] * steps
        else:
            rows, weights = shard.step_rows.tolist(), shard.weights.tolist()
            batch_size = shard.local_batch_size
        self.epoch = EpochBuffers(backend, len(X), batch_size, steps, shard,
                                  models=models_of(model), groups=groups, bootstrap=bootstrap)
        self.choice = None
        if stream is not None:
            if backend.name == "gpu":  # data, buffers: made on the default stream
                stream.wait_event(backend.xp.cuda.Stream.null.record())
                clock = clock or DeviceClock(backend.xp.cuda, stream)
            self.choice = GraphChoice(strict, clock, agree)
        kinds = list(dict.fromkeys(zip(rows[-2:], weights[-2:])))  # full steps, last step
        self.steps = [self._make(StaticStep(model, optimizer, X, y, r, self.epoch,
                                            None if sync is None else sync(w), clip, loss_fn),
                                 i == 0)
                      for i, (r, w) in enumerate(kinds)]
        self.count = steps
        self._last = self.steps[0]
        self._evaluations: dict = {}
        self._workspaces = [m._workspace for m in model.modules()] + [backend.ops.workspace]
        for workspace in self._workspaces:
            workspace.pin()

    def _make(self, static, measures=False):
        if self.stream is None:
            return static
        return CapturedStep(static, self.stream, self.choice, measures)

    def start_epoch(self) -> None:
        self.epoch.start_epoch(self.shuffle)

    def run(self, step: int) -> None:
        """Run step ``step`` (0-based) of the epoch."""
        self._last = self.steps[-1] if step == self.count - 1 else self.steps[0]
        self._last.run()

    @property
    def last_loss(self):
        """The loss of the last step run (a 0-d device array)."""
        last = self._last
        return (last.static if isinstance(last, CapturedStep) else last).loss

    def graph_news(self, ended: bool = False) -> str | None:
        """The line saying whether the steps are replayed as graphs, once, when known (with
        ``ended``: also when the run ended before the timing could decide)."""
        if self.choice is None:
            return None
        news = self.choice.news()
        if news is None and ended:
            news = self.choice.undecided(self.steps[0].runs)
        return news

    def can_evaluate(self, loss_fn, X, y) -> bool:
        """Whether :meth:`evaluate` can run ``(X, y)`` with ``loss_fn`` through static steps
        (the training loss, or like it a plain CrossEntropyLoss)."""
        if static_step_problem(self.model, loss_fn, X, y) is not None:
            return False
        return loss_fn is self.loss_fn or (_plain(loss_fn) and _plain(self.loss_fn))

    def evaluate(self, X, y, batch_size):
        """Mean loss and accuracy of the model (evaluation mode) on ``(X, y)``, on the device
        and checked, by batches of ``batch_size`` through static evaluation steps, made at
        the first call for ``X``. They are captured under ``graph="on"`` only: ``"auto"``
        timed the training step's shape, not theirs. A stack's: arrays, one per model."""
        key = (id(X), id(y), batch_size)
        if key not in self._evaluations:
            self._evaluations[key] = self._evaluation_steps(X, y, batch_size)
        steps, buffers, rows = self._evaluations[key]
        buffers.start_epoch(shuffle=False)
        with evaluation_mode(self.model):
            for index in range(len(rows)):
                steps[-1 if index == len(rows) - 1 else 0].run()
        self.model.backend.ops.check_errors()
        losses, hits = to_numpy(buffers.losses), to_numpy(buffers.hits)
        total = np.zeros(losses.shape[1:])  # as evaluate() sums: each batch's mean loss
        for loss, count in zip(losses, rows):  # (model's dtype) times its rows, in float64
            total = total + loss.astype(self.model.dtype) * count
        correct = hits.sum(axis=0)
        if models_of(self.model) is None:
            return float(total) / len(X), int(correct) / len(X)
        return total / len(X), correct / len(X)

    def _evaluation_steps(self, X, y, batch_size):
        n = len(X)
        rows = [min(batch_size, n - start) for start in range(0, n, batch_size)]
        buffers = EpochBuffers(self.model.backend, n, rows[0], len(rows),
                               models=models_of(self.model))
        steps = [StaticEvalStep(self.model, X, y, r, buffers, self.loss_fn)
                 for r in dict.fromkeys(rows[-2:])]  # full batches, a smaller last
        if self.choice is not None and self.choice.strict:
            steps = [self._make(step) for step in steps]
        return steps, buffers, rows

    def close(self) -> None:
        """Finish the capture stream's work (later work runs on other streams) and let the
        workspaces evict again; the graphs are dropped."""
        if self.stream is not None:
            self.stream.synchronize()
        evaluation_steps = [steps for steps, _, _ in self._evaluations.values()]
        for step in sum(evaluation_steps, self.steps):
            if isinstance(step, CapturedStep):
                step.release()
        for workspace in self._workspaces:
            workspace.unpin()
