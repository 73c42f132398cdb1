"""The static-buffer steps: one training step, and one evaluation batch.

A :class:`StaticStep` is one training step over buffers fixed at its first run: gather the
batch by index from the device-resident dataset (uint8 scaled to float), forward, softmax
cross-entropy, backward, optimizer update, and a record of the step's loss and correct count.
Which rows it takes, and where it records, come from a cursor in device memory, so the same
step, run again, walks through the epoch. After its first run it allocates nothing. A
:class:`StaticEvalStep` is the same without backward and update, walking the evaluation
set in order.

``step_runner.py`` runs them (on the CPU as they are, the code path CI tests); on the GPU
``capture.py`` records each once per batch shape as a CUDA graph and replays it: one launch
per step, no host synchronisation. The learning rate and Adam's step count live in device
memory, so a schedule changes them between replays; each epoch's shuffle is written into the
order buffer before its replays (cuRAND cannot be captured).

A stack (``nn/stack.py``) runs through the same steps: its loss and correct count are one per
model, and with an order per model (``fit(order=...)``) the order buffer holds one row order
per model and the step gathers (models, B, ...) inputs.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ...nn.activations import ReLU, Sigmoid, Tanh
from ...nn.boundary import inside
from ...nn.layers import Flatten, Linear, Sequential
from ...nn.losses import CrossEntropyLoss
from ...nn.stack import Stack, models_of
from ...nn.stacked_linear import StackedLinear
from ..loop.orders import draw_orders

STATIC_LAYERS = (Linear, StackedLinear, ReLU, Flatten, Sigmoid, Tanh)
GRAPH_MODES = ("auto", "on", "off")


def static_step_problem(model, loss_fn, X, y) -> str | None:
    """Why the static step cannot run this training, or None when it can."""
    if type(loss_fn) is not CrossEntropyLoss:
        return f"the loss is {type(loss_fn).__name__}; the static step computes CrossEntropyLoss"
    if not isinstance(model, (Sequential, Stack)):
        return (f"the model is a {type(model).__name__}; the static step runs a Sequential or "
                f"a Stack")
    for layer in model.layers:
        if type(layer) not in STATIC_LAYERS:
            return (f"layer {type(layer).__name__} is not one of "
                    f"{', '.join(c.__name__ for c in STATIC_LAYERS)} (a graph cannot draw "
                    f"Dropout's random masks)")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        return f"the labels must be 1-D integers, got {y.dtype} of shape {tuple(y.shape)}"
    if not (X.flags.c_contiguous and y.flags.c_contiguous):
        return "the inputs or labels are a strided view (the step gathers from contiguous arrays)"
    if model.backend.name == "gpu":
        if model.dtype != np.float32:
            return f"the fused GPU kernels run float32; the model is {model.dtype}"
        if X.dtype not in (np.uint8, np.float32) or y.dtype not in (np.int32, np.int64):
            return (f"the GPU step gathers uint8 or float32 inputs and int32/int64 labels, "
                    f"got {X.dtype} and {y.dtype}")
    return None


class EpochBuffers:
    """What the steps of one epoch share: the epoch's row ``order``, the ``cursor`` (first
    row of the next batch), and the per-step ``losses`` and ``hits`` the steps record (one
    column per model of a stack of ``models``). With ``groups``, one order per group of
    models (``training/loop/orders.py``; ``bootstrap``: drawn with replacement)."""

    def __init__(self, backend, num_samples, batch_size, steps, shard=None, *, models=None,
                 groups=None, bootstrap=False):
        xp = backend.xp
        self.backend, self.batch_size, self.num_samples = backend, batch_size, num_samples
        self.groups, self.bootstrap = groups, bootstrap
        self.positions = None if shard is None else backend.asarray(shard.positions)
        self.order = xp.arange(num_samples, dtype=np.int64) if shard is None \
            else self.positions.copy()
        if groups is not None:
            self.order = xp.empty((groups, num_samples), dtype=np.int64)
        per_model = () if models is None else (models,)
        self.cursor = xp.zeros(1, dtype=np.int64)
        self.losses = xp.zeros((steps,) + per_model, dtype=np.float64)
        self.hits = xp.zeros((steps,) + per_model, dtype=np.int64)

    def start_epoch(self, shuffle: bool) -> None:
        """Draw the epoch's order (as the DataLoader does; a rank's share of it when
        sharded; one per group of models) and rewind the cursor."""
        if self.groups is not None:
            self.order[...] = draw_orders(self.backend, self.num_samples, self.groups,
                                          self.bootstrap)
        elif shuffle:
            order = self.backend.permutation(self.num_samples)
            self.order[...] = order if self.positions is None else order[self.positions]
        self.cursor.fill(0)


class StaticEvalStep:
    """One evaluation batch of ``rows`` samples over static buffers: gather (in the order
    of ``batches``), forward, the loss and correct count recorded; no weight changes."""

    what = "evaluation step"

    def __init__(self, model, X, y, rows, batches: EpochBuffers, loss_fn=None):
        xp = model.backend.xp
        self.model, self.ops = model, model.backend.ops
        self.loss_fn = loss_fn or CrossEntropyLoss()  # its class weights and smoothing
        self.X, self.y, self.rows, self.epoch = X, y, rows, batches
        groups = () if batches.groups is None else (batches.groups,)
        per_model = () if models_of(model) is None else (models_of(model),)
        self.inputs = xp.empty(groups + (rows,) + X.shape[1:], dtype=model.dtype)
        self.labels = xp.empty(groups + (rows,), dtype=y.dtype)
        self.loss = xp.empty(per_model, dtype=model.dtype)
        self.correct = xp.empty(per_model, dtype=np.int64)
        self.grad = None  # the logits' shape is known after the first forward pass

    def run(self) -> None:
        """Gather, forward, loss; record; the cursor moves on."""
        self._forward_loss()
        self._record()

    def _forward_loss(self) -> None:
        """The batch at the cursor through the model and the loss (``self.grad`` holds the
        loss's gradient by the logits)."""
        ops, epoch = self.ops, self.epoch
        ops.gather_batch(self.X, self.y, epoch.order, epoch.cursor, self.inputs, self.labels)
        with inside():  # the layers' own buffers, not the copies a user's call gets
            logits = self.model.forward(self.inputs)
            if self.grad is None:
                self.grad = self.model.backend.xp.empty_like(logits)
            ops.softmax_cross_entropy(
                logits, self.labels, self.grad, out=(self.loss, self.correct),
                weight=self.loss_fn.weight_on(self.model.backend, logits),
                label_smoothing=self.loss_fn.label_smoothing)

    def _record(self) -> None:
        epoch = self.epoch
        self.ops.end_step(epoch.cursor, self.rows, epoch.batch_size, self.loss, self.correct,
                          epoch.losses, epoch.hits)

    def check(self) -> None:
        """Host checks before a replay of this step's graph (none here)."""

    def replayed(self) -> None:
        """Host bookkeeping after a replay of this step's graph (none here)."""

    def recording(self):
        """A block in which the step is recorded, not run: host state to keep (none here)."""
        return contextlib.nullcontext()


class StaticStep(StaticEvalStep):
    """One training step of ``rows`` samples over static buffers (see the module text)."""

    what = "training step"

    def __init__(self, model, optimizer, X, y, rows, epoch: EpochBuffers, before_update=None,
                 clip=None, loss_fn=None):
        super().__init__(model, X, y, rows, epoch, loss_fn)
        self.optimizer = optimizer
        self.before_update = before_update  # e.g. the gradient all-reduce of data parallelism
        self.clip = clip  # fit's gradient clipping (a NormClipper), after the all-reduce

    def run(self) -> None:
        """Gather, forward, loss, backward, (all-reduce, clipping,) update, record; the
        cursor moves on."""
        self._forward_loss()
        with inside():
            self.model.backward(self.grad, input_grad=False)
        if self.before_update is not None:
            self.before_update()
        if self.clip is not None:
            self.clip()
        self.optimizer.step()
        self._record()

    def check(self) -> None:
        """A replay runs no Python: the optimizer's check that the model's parameters are
        still the ones it updates (which ``step`` makes when run) is made here."""
        self.optimizer.check_parameters()

    def replayed(self) -> None:
        """A replay advanced the device step count; the host one follows."""
        self.optimizer.step_count += 1

    @contextlib.contextmanager
    def recording(self):
        """The recording counts a step it does not take: the host count is restored."""
        count = self.optimizer.step_count
        try:
            yield
        finally:
            self.optimizer.step_count = count


def graph_mode(graph, model, loss_fn, X, y) -> tuple[str, str]:
    """``(mode, why)``: ``"graph"`` (captured, GPU), ``"static"`` (the same step without
    capture, CPU) or ``"eager"``, for ``fit``'s ``graph`` argument (auto, on, off)."""
    if graph not in GRAPH_MODES:
        raise ValueError(f"graph must be one of {GRAPH_MODES}, got {graph!r}")
    if graph == "off":
        return "eager", "graph='off'"
    problem = static_step_problem(model, loss_fn, X, y)
    on_gpu = model.backend.name == "gpu"
    if graph == "on":
        if not on_gpu:
            raise ValueError("graph='on' needs the GPU (a CUDA graph); the model is on the "
                             "CPU: use graph='auto' (the same static step, not captured) or "
                             "'off'")
        if problem:
            raise ValueError(f"graph='on' cannot capture this training: {problem}; use "
                             f"graph='auto' or 'off'")
    if problem:
        return "eager", problem
    if on_gpu:
        return "graph", "the whole step is one CUDA graph launch"
    return "static", "the static-buffer step, not captured (no CUDA graphs on the CPU)"
