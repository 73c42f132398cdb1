"""The PyTorch side of ``gpunet speedrun``: the same recipe in PyTorch, eager, CUDA-graphed or
compiled, timed from "data is on the device" to "final test accuracy known".

Same as gpunet: the model's initial weights are gpunet's own for the seed (copied from
:meth:`Recipe.model`), the optimizer's formulas and per-epoch learning rate, a fresh shuffle
every epoch (``torch.randperm`` from a generator seeded with ``seed``), uint8 pixels scaled to
[0, 1] on the device batch by batch, the last smaller batch included. PyTorch is imported
inside the functions: it is never a gpunet dependency.

Every mode runs one step body (gather the batch by index, forward, cross-entropy, backward,
optimizer step) with a fused optimizer (``fused=True``, one kernel per step) whose learning
rate is a device tensor, refilled between epochs. Before the clock starts, a few warm-up steps
of each batch shape run (library initialisation, kernel choice; and in the graph and compile
modes the capture or the compilation), then the weights and optimizer state are restored in
place, so training itself is the uninterrupted run. Modes:

- ``"eager"``: one Python step per batch.
- ``"cuda-graph"`` (CUDA only): the whole step, optimizer included, captured with
  ``torch.cuda.graph`` once for the full batch and once for the last, smaller one. The epoch's
  permutation is copied into a static index buffer and a device counter picks each replay's
  rows, so an epoch is one copy plus one replay per batch, and no host synchronisation.
- ``"static"``: the same static-buffer steps without capture (any device; tests the graph
  mode's code path on the CPU).
- ``"compile"``: the model wrapped by ``torch.compile(dynamic=False)`` (one compilation per
  batch shape, both made in the warm-up); the optimizer step runs eagerly.

Evaluation (one forward pass of the whole test set, eager, no gradients) runs after every
epoch with the clock stopped; only the last one is inside the timed region.
"""
from __future__ import annotations

import time
import warnings

from ..backend import to_numpy
from ..nn import Linear

MODES = ("eager", "cuda-graph", "static", "compile")
WARMUP_STEPS = 3  # per batch shape, as in PyTorch's CUDA-graph examples
EVAL_BATCH = 10_000


def run_torch(recipe, data, seed, device="cpu", mode="eager", *, compile_mode=None) -> dict:
    """Train ``recipe`` on ``data`` with PyTorch; return the speedrun's measurements.

    ``data``: NumPy arrays {"X_train": uint8 (n, 784), "y_train": int64, "X_test", "y_test"}
    (cut to ``recipe.train_samples`` / ``test_samples``); ``device``: "cpu" or "cuda";
    ``mode``: one of :data:`MODES`; ``compile_mode``: ``torch.compile``'s ``mode`` (e.g.
    "reduce-overhead"), for ``mode="compile"`` only.

    Returns {"accuracy", "seconds" (data on the device -> final accuracy known),
    "compile_seconds" (compilation or capture, with its warm-up; None in eager and static
    modes), "warmup_seconds" (all the untimed warm-up), "curve" ([(training seconds so far,
    test accuracy)] at each epoch's end; evaluation time excluded), "steps"}.
    """
    import torch

    _check(torch, device, mode, compile_mode)
    data = recipe.select(data)
    dev = torch.device(device)
    model = _torch_model(torch, recipe, seed).to(dev)
    lr = torch.tensor(recipe.lr_at(0), dtype=torch.float32, device=dev)
    optimizer = _torch_optimizer(torch, recipe, model, lr, mode == "cuda-graph")
    X, y, X_test, y_test = (torch.from_numpy(data[key]).to(dev)
                            for key in ("X_train", "y_train", "X_test", "y_test"))
    X, X_test = X.reshape(len(X), -1), X_test.reshape(len(X_test), -1)
    clock = _Clock(torch, dev)
    clock.sync()

    steps = _Steps(torch, model, optimizer, X, y, recipe.batch_size)
    started = time.perf_counter()
    if mode == "compile":
        torch.compiler.reset()  # earlier runs' graphs would count towards the recompile limit
        steps.forward = torch.compile(model, dynamic=False, mode=compile_mode)
    saved = [p.detach().clone() for p in model.parameters()]
    runner = _GraphEpochs(steps, capture=mode == "cuda-graph") if mode in (
        "cuda-graph", "static") else _EagerEpochs(steps)
    runner.warm_up()
    _restore(torch, model, optimizer, saved)
    clock.sync()
    warmup_seconds = time.perf_counter() - started

    generator = torch.Generator(device=dev)
    generator.manual_seed(seed)
    curve = []
    clock.start()
    for epoch in range(recipe.epochs):
        lr.fill_(recipe.lr_at(epoch))
        runner.epoch(torch.randperm(len(X), generator=generator, device=dev))
        trained = clock.stop()
        last = epoch + 1 == recipe.epochs
        if last:
            clock.start()  # the final evaluation is timed, the others are not
        curve.append((trained, _accuracy(torch, model, X_test, y_test)))
        if not last:
            clock.start()
    seconds = clock.stop()
    return {"accuracy": curve[-1][1], "seconds": seconds,
            "compile_seconds": warmup_seconds if mode in ("cuda-graph", "compile") else None,
            "warmup_seconds": warmup_seconds, "curve": curve,
            "steps": recipe.epochs * len(range(0, len(X), recipe.batch_size))}


def _check(torch, device, mode, compile_mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but torch.cuda.is_available() is False")
    if mode == "cuda-graph" and device != "cuda":
        raise ValueError("mode='cuda-graph' needs device='cuda' (mode='static' runs the same "
                         "steps without capture on any device)")
    if compile_mode is not None and mode != "compile":
        raise ValueError(f"compile_mode={compile_mode!r} applies to mode='compile' only")


def _torch_model(torch, recipe, seed):
    """``torch.nn.Sequential`` of Linear/ReLU holding gpunet's initial weights for ``seed``."""
    layers = []
    for layer in recipe.model(seed):
        if not isinstance(layer, Linear):
            layers.append(torch.nn.ReLU())
            continue
        linear = torch.nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(to_numpy(layer.weight.data)))
            linear.bias.copy_(torch.from_numpy(to_numpy(layer.bias.data)))
        layers.append(linear)
    return torch.nn.Sequential(*layers)


def _torch_optimizer(torch, recipe, model, lr, capturable):
    """The recipe's optimizer in ``torch.optim``, fused, reading ``lr`` (a device tensor).

    Adam and AdamW refuse to be captured unless ``capturable=True`` (their fused kernel keeps
    the step count on the device either way); SGD has no such flag."""
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
           "adamw": torch.optim.AdamW}[recipe.optimizer]
    extra = {"capturable": True} if capturable and recipe.optimizer != "sgd" else {}
    return cls(model.parameters(), lr=lr, fused=True, **extra, **recipe.optimizer_kwargs())


def _restore(torch, model, optimizer, saved):
    """Undo the warm-up in place (captured graphs keep their addresses): the saved weights,
    and optimizer state that acts as a fresh one's (zero moments and step count)."""
    with torch.no_grad():
        for param, value in zip(model.parameters(), saved):
            param.copy_(value)
        for state in optimizer.state.values():
            for value in state.values():
                if torch.is_tensor(value):
                    value.zero_()
    optimizer.zero_grad(set_to_none=True)


def _accuracy(torch, model, X, y) -> float:
    """Test accuracy of ``model`` on uint8 images ``X`` (eager, no gradients; syncs)."""
    correct = torch.zeros((), dtype=torch.int64, device=X.device)
    with torch.no_grad():
        for start in range(0, len(X), EVAL_BATCH):
            logits = model(X[start:start + EVAL_BATCH].to(torch.float32).div_(255))
            correct += (logits.argmax(dim=1) == y[start:start + EVAL_BATCH]).sum()
    return int(correct) / len(X)


class _Clock:
    """Accumulated wall time of the started intervals, synchronised with the device."""

    def __init__(self, torch, device):
        self.cuda = torch.cuda if device.type == "cuda" else None
        self.device = device
        self.total = 0.0
        self._since = None

    def sync(self):
        if self.cuda is not None:
            self.cuda.synchronize(self.device)

    def start(self):
        self.sync()
        self._since = time.perf_counter()

    def stop(self) -> float:
        """Stop the interval; the total so far."""
        self.sync()
        self.total += time.perf_counter() - self._since
        return self.total


class _Steps:
    """The one training step of every mode, on the device-resident uint8 dataset."""

    def __init__(self, torch, model, optimizer, X, y, batch_size):
        self.torch = torch
        self.model, self.forward, self.optimizer = model, model, optimizer
        self.X, self.y = X, y
        self.batch_size = min(batch_size, len(X))
        self.full, self.rest = divmod(len(X), self.batch_size)

    def step(self, rows):
        """One update on the samples ``rows`` (a device index tensor)."""
        self.optimizer.zero_grad(set_to_none=True)
        xb = self.X.index_select(0, rows).to(self.torch.float32).div_(255)
        loss = self.torch.nn.functional.cross_entropy(self.forward(xb), self.y.index_select(0, rows))
        loss.backward()
        self.optimizer.step()

    def shapes(self):
        """(start, size) of a full batch and, if any, of the last smaller one."""
        return [(0, self.batch_size)] + ([(self.full * self.batch_size, self.rest)]
                                         if self.rest else [])


class _EagerEpochs:
    """One Python step per batch (the eager and compile modes)."""

    def __init__(self, steps):
        self.steps = steps

    def warm_up(self):
        order = self.steps.torch.arange(len(self.steps.X), device=self.steps.X.device)
        for start, size in self.steps.shapes():
            for _ in range(WARMUP_STEPS):
                self.steps.step(order[start:start + size])

    def epoch(self, order):
        size = self.steps.batch_size
        for start in range(0, len(order), size):
            self.steps.step(order[start:start + size])


class _GraphEpochs:
    """Static buffers: the epoch's order in ``perm``, a device ``counter`` selecting the full
    batch; with ``capture``, each step shape is a CUDA graph replayed once per batch."""

    def __init__(self, steps, capture):
        torch = steps.torch
        self.torch, self.steps, self.capture = torch, steps, capture
        device = steps.X.device
        self.perm = torch.arange(len(steps.X), device=device)
        self.counter = torch.zeros(1, dtype=torch.int64, device=device)
        self.batches = self.perm[:steps.full * steps.batch_size].view(steps.full,
                                                                      steps.batch_size)
        self.last = self.perm[steps.full * steps.batch_size:]
        self.replay_full, self.replay_last = self.full_step, self.last_step

    def full_step(self):
        self.steps.step(self.batches.index_select(0, self.counter).view(-1))
        self.counter.add_(1)

    def last_step(self):
        self.steps.step(self.last)

    def warm_up(self):
        """Run each step shape a few times (on a side stream when capturing), then capture."""
        torch, calls = self.torch, [self.full_step] + ([self.last_step] if self.steps.rest
                                                        else [])
        if not self.capture:
            self._run_each(calls)
            return
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self._run_each(calls)
        torch.cuda.current_stream().wait_stream(stream)
        graphs = []
        for call in calls:
            graph = torch.cuda.CUDAGraph()
            self.steps.optimizer.zero_grad(set_to_none=True)  # backward allocates in the pool
            with torch.cuda.graph(graph, stream=stream):
                call()
            graphs.append(graph)
        self.replay_full = graphs[0].replay
        if self.steps.rest:
            self.replay_last = graphs[1].replay

    def _run_each(self, calls):
        with warnings.catch_warnings():  # "capturable=True ... running without graph capture"
            warnings.filterwarnings("ignore", message=".*capturable=True")
            for call in calls:
                for _ in range(WARMUP_STEPS):
                    self.counter.zero_()  # stays within the batches however few there are
                    call()

    def epoch(self, order):
        self.perm.copy_(order)
        self.counter.zero_()
        for _ in range(self.steps.full):
            self.replay_full()
        if self.steps.rest:
            self.replay_last()
