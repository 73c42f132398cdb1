"""The static-buffer training step, and its CUDA-graph capture on the GPU.

A :class:`StaticStep` is one training step over buffers fixed at its first run: gather the
batch by index from the device-resident dataset (uint8 scaled to float), forward, softmax
cross-entropy, backward, optimizer update, and a record of the step's loss and correct count.
Which rows it takes, and where it records, come from a cursor in device memory, so the same
step, run again, walks through the epoch. After its first run it allocates nothing.

On the CPU a :class:`StepRunner` runs it as it is (the code path CI tests). On the GPU a
:class:`CapturedStep` records it once per batch shape with CuPy stream capture and replays
the graph: one launch per step, no host synchronisation. The learning rate and Adam's step
count live in device memory, so a schedule changes them between replays; each epoch's
shuffle is written into the order buffer before its replays (cuRAND cannot be captured).
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any

import numpy as np

from ..nn.activations import ReLU, Sigmoid, Tanh
from ..nn.boundary import inside
from ..nn.layers import Flatten, Linear, Sequential
from ..nn.losses import CrossEntropyLoss

STATIC_LAYERS = (Linear, ReLU, Flatten, Sigmoid, Tanh)
GRAPH_MODES = ("auto", "on", "off")
TILED = ((math.inf, "tiled"),)  # CuPy refuses cuBLAS while a stream captures


def static_step_problem(model, loss_fn, X, y) -> str | None:
    """Why the static step cannot run this training, or None when it can."""
    if type(loss_fn) is not CrossEntropyLoss:
        return f"the loss is {type(loss_fn).__name__}; the static step computes CrossEntropyLoss"
    if not isinstance(model, Sequential):
        return f"the model is a {type(model).__name__}; the static step runs a Sequential"
    for layer in model.layers:
        if type(layer) not in STATIC_LAYERS:
            return (f"layer {type(layer).__name__} is not one of "
                    f"{', '.join(c.__name__ for c in STATIC_LAYERS)} (a graph cannot draw "
                    f"Dropout's random masks)")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        return f"the labels must be 1-D integers, got {y.dtype} of shape {tuple(y.shape)}"
    if model.backend.name == "gpu":
        if model.dtype != np.float32:
            return f"the fused GPU kernels run float32; the model is {model.dtype}"
        if X.dtype not in (np.uint8, np.float32) or y.dtype not in (np.int32, np.int64):
            return (f"the GPU step gathers uint8 or float32 inputs and int32/int64 labels, "
                    f"got {X.dtype} and {y.dtype}")
    return None


class EpochBuffers:
    """What the steps of one epoch share: the epoch's row ``order``, the ``cursor`` (first
    row of the next batch), and the per-step ``losses`` and ``hits`` the steps record."""

    def __init__(self, backend, num_samples, batch_size, steps, shard=None):
        xp = backend.xp
        self.backend, self.batch_size, self.num_samples = backend, batch_size, num_samples
        self.positions = None if shard is None else backend.asarray(shard.positions)
        self.order = xp.arange(num_samples, dtype=np.int64) if shard is None \
            else self.positions.copy()
        self.cursor = xp.zeros(1, dtype=np.int64)
        self.losses = xp.zeros(steps, dtype=np.float64)
        self.hits = xp.zeros(steps, dtype=np.int64)

    def start_epoch(self, shuffle: bool) -> None:
        """Draw the epoch's order (as the DataLoader does; a rank's share of it when
        sharded) and rewind the cursor."""
        if shuffle:
            order = self.backend.permutation(self.num_samples)
            self.order[...] = order if self.positions is None else order[self.positions]
        self.cursor.fill(0)


class StaticStep:
    """One training step of ``rows`` samples over static buffers (see the module text)."""

    def __init__(self, model, optimizer, X, y, rows, epoch: EpochBuffers, before_update=None):
        xp = model.backend.xp
        self.model, self.optimizer, self.ops = model, optimizer, model.backend.ops
        self.X, self.y, self.rows, self.epoch = X, y, rows, epoch
        self.before_update = before_update  # e.g. the gradient all-reduce of data parallelism
        self.inputs = xp.empty((rows,) + X.shape[1:], dtype=model.dtype)
        self.labels = xp.empty(rows, dtype=y.dtype)
        self.loss = xp.empty((), dtype=model.dtype)
        self.correct = xp.empty((), dtype=np.int64)
        self.grad = None  # the logits' shape is known after the first forward pass

    def run(self) -> None:
        """Gather, forward, loss, backward, update, record; the cursor moves on."""
        ops, epoch = self.ops, self.epoch
        ops.gather_batch(self.X, self.y, epoch.order, epoch.cursor, self.inputs, self.labels)
        with inside():  # the layers' own buffers, not the copies a user's call gets
            logits = self.model.forward(self.inputs)
            if self.grad is None:
                self.grad = self.model.backend.xp.empty_like(logits)
            ops.softmax_cross_entropy(logits, self.labels, self.grad,
                                      out=(self.loss, self.correct))
            self.model.backward(self.grad, input_grad=False)
        if self.before_update is not None:
            self.before_update()
        self.optimizer.step()
        ops.end_step(epoch.cursor, self.rows, epoch.batch_size, self.loss, self.correct,
                     epoch.losses, epoch.hits)


@contextlib.contextmanager
def _tiled_gemms(ops):
    """Every GEMM of ``ops`` on the tiled kernel inside the block (CuPy refuses cuBLAS while
    a stream captures; the warm-up run uses the same products). Ops without GEMM routes (the
    NumPy ones) are left as they are."""
    if not hasattr(ops, "gemm_routes"):
        yield
        return
    routes, ops.gemm_routes = ops.gemm_routes, TILED
    try:
        yield
    finally:
        ops.gemm_routes = routes


class CapturedStep:
    """A :class:`StaticStep` on the GPU: run eagerly once (warm-up: its buffers are made),
    recorded as a CUDA graph on the next call, then replayed. The optimizer's host step
    count is advanced per replay (the graph advances the device one). When recording fails
    and ``strict`` is off (``graph="auto"``), a warning says why and the step runs eagerly
    from then on; with ``strict`` (``graph="on"``) the error is raised."""

    def __init__(self, static: StaticStep, stream, strict: bool = True):
        self.static, self.stream, self.strict = static, stream, strict
        self.graph: Any = None  # a cupy.cuda.Graph once recorded
        self.warm = self.uncaptured = False

    def run(self) -> None:
        static = self.static
        if self.graph is None and not self.uncaptured:
            with _tiled_gemms(static.ops):
                if not self.warm:
                    static.run()
                    self.warm = True
                    return
                self._record()
        if self.uncaptured:
            static.run()
            return
        self.graph.launch(self.stream)
        static.optimizer.step_count += 1

    def _record(self) -> None:
        """Record one step (its kernels are not executed) as ``self.graph``."""
        optimizer = self.static.optimizer
        count = optimizer.step_count  # the recording counts a step it does not take
        try:
            self.stream.begin_capture()
            try:
                self.static.run()
            except BaseException:  # the step's own error, not end_capture's on top of it
                with contextlib.suppress(Exception):
                    self.stream.end_capture()
                raise
            self.graph = self.stream.end_capture()
        except Exception as exc:
            if self.strict:
                raise
            warnings.warn(f"graph: recording the training step failed ({type(exc).__name__}: "
                          f"{exc}); it runs uncaptured from here on", RuntimeWarning,
                          stacklevel=2)
            self.uncaptured = True
        finally:
            optimizer.step_count = count


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


class StepRunner:
    """The static steps of a training run over ``(X, y)``: one for full batches, one for a
    smaller last batch. With a CUDA ``stream`` they are captured on it (every other op of
    the run must be issued on that stream too); without, they run as they are. ``epoch``
    holds what the epoch's steps record.

    Data parallelism: with a :class:`~gpunet.data.shard.Shard` ``shard`` the steps walk this
    rank's share of each global batch of ``batch_size``, and ``sync(weight)`` (the gradient
    all-reduce) returns what each step calls between backward and the update; on the GPU it
    is captured with the step, on the capture stream. ``strict``: a recording that fails
    raises (``graph="on"``) rather than falling back to the uncaptured step."""

    def __init__(self, model, optimizer, X, y, batch_size, steps, stream=None, *, shard=None,
                 sync=None, strict=True):
        backend = model.backend
        self.strict = strict
        self.shuffle = batch_size < len(X)
        if shard is None:
            rows = [batch_size] * (steps - 1) + [len(X) - (steps - 1) * batch_size]
            weights = [1.0] * steps
        else:
            rows, weights = shard.step_rows.tolist(), shard.weights.tolist()
            batch_size = shard.local_batch_size
        self.epoch = EpochBuffers(backend, len(X), batch_size, steps, shard)
        self.stream = stream
        if stream is not None and backend.name == "gpu":  # data, buffers: default stream
            stream.wait_event(backend.xp.cuda.Stream.null.record())
        kinds = list(dict.fromkeys(zip(rows[-2:], weights[-2:])))  # full steps, last step
        self.steps = [self._make(StaticStep(model, optimizer, X, y, r, self.epoch,
                                            None if sync is None else sync(w)))
                      for r, w in kinds]
        self.count = steps
        self._last = self.steps[0]
        self._workspaces = [m._workspace for m in model.modules()] + [backend.ops.workspace]
        for workspace in self._workspaces:
            workspace.pin()

    def _make(self, static):
        if self.stream is None:
            return static
        return CapturedStep(static, self.stream, self.strict)

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

    def close(self) -> None:
        """Finish the capture stream's work (later work runs on other streams) and let the
        workspaces evict again (the graphs are dropped with the runner)."""
        if self.stream is not None:
            self.stream.synchronize()
        for workspace in self._workspaces:
            workspace.unpin()
