"""The variants of one training step that ``gpunet bench`` times, and their clocks.

Each variant builds its model and its on-device copy of the dataset once, then hands out, per
batch size, a *step* (one training step on a fixed device-resident batch) and an *epoch* (one
reshuffled pass over the dataset). ``GpunetVariant`` runs the library on a backend with a
chosen ops object (numpy, plain CuPy, fused kernels), ``StaticStepVariant`` its static (on
the GPU: captured) step; ``GemmFloorVariant`` runs only the step's GEMMs. The PyTorch variant
is in ``torch_variant.py``.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any
from dataclasses import dataclass

import numpy as np

from .. import nn, optim
from ..data.loader import DataLoader
from ..nn.losses import CrossEntropyLoss
from ..training.engine.step_runner import StepRunner

IN_FEATURES = 784  # Fashion-MNIST images, 28 x 28
CPU_SETTLE_SECONDS = 0.2  # > OpenBLAS's default busy-wait (2^28 cycles, ~0.1 s)
NUM_CLASSES = 10


@dataclass(frozen=True)
class Workload:
    """What every variant trains: an MLP of ``hidden`` widths on ``samples`` random images."""

    hidden: tuple[int, ...] = (512, 512)
    optimizer: str = "sgd"
    samples: int = 60_000
    seed: int = 0

    @property
    def widths(self) -> tuple[int, ...]:
        """Layer widths from input to logits, e.g. (784, 512, 512, 10)."""
        return (IN_FEATURES, *self.hidden, NUM_CLASSES)

    @property
    def hyperparameters(self) -> dict:
        """The optimizer's defaults (``gpunet.optim.DEFAULTS``): what ``gpunet train`` uses."""
        return optim.DEFAULTS[self.optimizer]

    def host_dataset(self):
        """Fashion-MNIST-shaped random data: float32 pixels in [0, 1) and int64 labels."""
        rng = np.random.default_rng(self.seed)
        X = rng.random((self.samples, IN_FEATURES), dtype=np.float32)
        y = rng.integers(0, NUM_CLASSES, self.samples)
        return X, y


# -- clocks ------------------------------------------------------------------------------
class HostClock:
    """Wall time by ``perf_counter`` (CPU work is done when the call returns)."""

    def __init__(self):
        self._start = 0.0

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self) -> float:
        return time.perf_counter() - self._start


class EventClock:
    """Device time between two CUDA events (CuPy's or PyTorch's ``Event`` classes)."""

    def __init__(self, make_event, elapsed_ms, synchronize):
        self._begin, self._end = make_event(), make_event()
        self._elapsed_ms = elapsed_ms
        self.synchronize = synchronize

    def start(self) -> None:
        self.synchronize()
        self._begin.record()

    def stop(self) -> float:
        self._end.record()
        self._end.synchronize()
        return self._elapsed_ms(self._begin, self._end) / 1000.0


# -- variants ----------------------------------------------------------------------------
class Variant:
    """One way of running the training step; subclasses fill in the device specifics."""

    name = ""
    device = "cpu"  # "cpu" or "gpu"
    oom_errors: tuple = (MemoryError,)

    def details(self) -> dict:
        """Implementation facts recorded with the results (ops class, optimizer kind...)."""
        return {}

    @contextlib.contextmanager
    def active(self):
        """Process-wide settings this variant needs while it runs (none by default)."""
        yield

    def step_at(self, batch_size: int):
        """A callable running one training step on a device-resident batch of that size."""
        raise NotImplementedError(f"{type(self).__name__} must define step_at(self, "
                                  f"batch_size), returning a callable that runs one step")

    def epoch_at(self, batch_size: int):
        """A callable running one reshuffled epoch, or None where an epoch means nothing."""
        return None

    def last_loss(self) -> float | None:
        """The loss of the last step (one host synchronisation), None without a loss."""
        return None

    def synchronize(self) -> None:
        """Wait for the device to finish queued work (nothing to wait for on the CPU)."""

    def settle(self) -> None:
        """Before a timed phase on the CPU, give the worker threads of the variant that ran
        last (OpenBLAS, OpenMP) time to stop spinning, so they do not steal this one's cores."""
        if self.device == "cpu":
            time.sleep(CPU_SETTLE_SECONDS)

    def clock(self):
        return HostClock()

    def count_launches(self, step) -> dict | None:
        """Kernel launches per step, measured on the GPU; None where not counted."""
        return None

    def release(self) -> None:
        """Return cached device memory between batch sizes (after an out-of-memory too)."""


def mlp_layers(widths, linear, relu) -> list:
    """``linear(in, out)`` per pair of widths with ``relu()`` between them (not after the last)."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        if i:
            layers.append(relu())
        layers.append(linear(fan_in, fan_out))
    return layers


def warm_last_batch(variant, batch_size) -> None:
    """Run one step on the shape of an epoch's last, partial batch (allocation, compilation)."""
    rest = variant.workload.samples % batch_size
    if rest and batch_size < variant.workload.samples:
        variant.train_step(variant.X[:rest], variant.y[:rest])


class BackendVariant(Variant):
    """A variant running on a gpunet backend: its clocks, memory pool and error types."""

    def __init__(self, backend):
        self.backend, self.device = backend, backend.name
        if self.device == "gpu":
            self.oom_errors = (MemoryError, backend.xp.cuda.memory.OutOfMemoryError)

    def synchronize(self):
        if self.device == "gpu":
            self.backend.xp.cuda.get_current_stream().synchronize()

    def clock(self):
        if self.device == "cpu":
            return HostClock()
        cuda = self.backend.xp.cuda
        return EventClock(cuda.Event, cuda.get_elapsed_time, self.synchronize)

    def count_launches(self, step):
        if self.device == "cpu":
            return None
        return count_cuda_launches(step, self.synchronize)

    def release(self):
        if self.device == "gpu":
            self.synchronize()
            self.backend.xp.get_default_memory_pool().free_all_blocks()


class GpunetVariant(BackendVariant):
    """gpunet's own training step on ``backend`` with ``ops`` swapped in while it runs."""

    def __init__(self, name, backend, ops, workload: Workload):
        super().__init__(backend)
        self.name, self.ops, self.workload = name, ops, workload
        with self.active():
            self.model = nn.Sequential(
                *mlp_layers(workload.widths, nn.Linear, nn.ReLU)).to(self.device)
            self.loss_fn = CrossEntropyLoss()
            params = self.model.parameters()
            self.optimizer = optim.OPTIMIZERS[workload.optimizer](params,
                                                                  **workload.hyperparameters)
            X, y = workload.host_dataset()
            self.X, self.y = backend.asarray(X), backend.asarray(y)
        self._loss = None
        self.ranks = 1
        self._sync: Any = None  # the gradient all-reduce, when distributed

    def distribute(self, comm) -> None:
        """Train as one of ``comm.size`` data-parallel ranks: start from rank 0's weights,
        take ``batch / size`` rows of each step, average the gradient over the ranks (one
        all-reduce of the flat buffer between backward and the update)."""
        grad, scale = self.optimizer.flat.grad, 1.0 / comm.size
        comm.broadcast_(self.optimizer.flat.data)

        def sync():
            self.backend.xp.multiply(grad, scale, out=grad)
            comm.allreduce_(grad)
        self.ranks, self._sync = comm.size, sync

    def details(self):
        return {"ops": type(self.ops).__name__, "array_module": self.backend.xp.__name__,
                "optimizer": type(self.optimizer).__name__}

    @contextlib.contextmanager
    def active(self):
        saved = self.backend.ops
        self.backend.ops = self.ops
        try:
            yield
        finally:
            self.backend.ops = saved

    def train_step(self, xb, yb):
        self._loss = self.loss_fn(self.model(xb), yb)
        self.model.backward(self.loss_fn.backward(), input_grad=False)
        if self._sync is not None:
            self._sync()
        self.optimizer.step()

    def step_at(self, batch_size):
        """One step on ``batch_size`` rows (this rank's share of them when distributed)."""
        index = self.backend.xp.arange(batch_size // self.ranks) % self.workload.samples
        xb, yb = self.X[index], self.y[index]
        return lambda: self.train_step(xb, yb)

    def epoch_at(self, batch_size):
        loader = DataLoader(self.X, self.y, batch_size, shuffle=True, device=self.device)
        warm_last_batch(self, batch_size)

        def epoch():
            for xb, yb in loader:
                self.train_step(xb, yb)
        return epoch

    def last_loss(self):
        self.ops.check_errors()
        return float(self._loss)


class StaticStepVariant(GpunetVariant):
    """gpunet's static-buffer step (``fit(graph="auto")``): captured as a CUDA graph and
    replayed on the GPU (``cupy-graph``), run as it is on the CPU (``numpy-static``)."""

    def __init__(self, name, backend, ops, workload: Workload):
        self.stream = (backend.xp.cuda.Stream(non_blocking=True) if backend.name == "gpu"
                       else None)
        self.runners: list = []
        super().__init__(name, backend, ops, workload)

    def details(self):
        return {**super().details(), "captured": self.stream is not None}

    @contextlib.contextmanager
    def active(self):
        with super().active(), (self.stream or contextlib.nullcontext()):
            yield  # events, copies and replays all on the capture stream

    def _runner(self, X, y, batch_size):
        steps = -(-len(X) // batch_size)
        runner = StepRunner(self.model, self.optimizer, X, y, batch_size, steps, self.stream)
        self.runners.append(runner)
        return runner

    def _epoch_of(self, runner):
        def epoch():
            runner.start_epoch()
            for step in range(runner.count):
                runner.run(step)
        return epoch

    def step_at(self, batch_size):
        """Full-batch steps walking an epoch of whole batches (the data repeated to fill
        one batch where the dataset is smaller)."""
        n = self.workload.samples
        index = self.backend.xp.arange(max(batch_size, n - n % batch_size)) % n
        runner = self._runner(self.X[index], self.y[index], batch_size)
        position = [0]

        def step():
            if position[0] == 0:
                runner.start_epoch()
            runner.run(position[0])
            position[0] = (position[0] + 1) % runner.count
        return step

    def epoch_at(self, batch_size):
        epoch = self._epoch_of(self._runner(self.X, self.y, batch_size))
        epoch()  # warm-up: the last batch's buffers (and graph) too
        return epoch

    def last_loss(self):
        return float(self.runners[-1].last_loss) if self.runners else None

    def release(self):
        for runner in self.runners:
            runner.close()
        self.runners = []
        super().release()


class GemmFloorVariant(BackendVariant):
    """Only the GEMMs of one step, back to back, with the backend's array module:
    one forward GEMM and one weight-gradient GEMM per layer, one input-gradient GEMM per
    layer but the first, with the transposes ``NumpyOps`` uses."""

    name = "gemm-floor"

    def __init__(self, backend, workload: Workload):
        super().__init__(backend)
        self.workload = workload
        xp = backend.xp
        widths = workload.widths
        self.weights = [xp.full((fan_out, fan_in), 0.01, dtype=np.float32)
                        for fan_in, fan_out in zip(widths[:-1], widths[1:])]
        self.weight_grads = [xp.empty_like(w) for w in self.weights]

    def details(self):
        return {"array_module": self.backend.xp.__name__,
                "gemms_per_step": 3 * len(self.weights) - 1}

    def step_at(self, batch_size):
        xp, weights, weight_grads = self.backend.xp, self.weights, self.weight_grads
        widths = self.workload.widths
        acts = [xp.full((batch_size, w), 0.01, dtype=np.float32) for w in widths]
        grads = [xp.full((batch_size, w), 0.01, dtype=np.float32) for w in widths[1:]]
        layers = range(len(weights))

        def step():
            for i in layers:  # forward: acts[i+1] = acts[i] @ W_i^T
                xp.matmul(acts[i], weights[i].T, out=acts[i + 1])
            for i in reversed(layers):  # dW_i = dZ_i^T acts[i]; dX = dZ_i W_i
                xp.matmul(grads[i].T, acts[i], out=weight_grads[i])
                if i:
                    xp.matmul(grads[i], weights[i], out=grads[i - 1])
        return step


def count_cuda_launches(step, synchronize, steps: int = 3) -> dict | None:
    """Kernels and memory copies/sets per step, counted by PyTorch's CUPTI profiler.

    CUPTI records every kernel in the process, so this counts CuPy's launches too; without
    a CUDA-enabled PyTorch nothing is counted (None).
    """
    try:
        import torch
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.cuda.init()
    step()
    synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        synchronize()
    names = [e.name for e in prof.events() if e.device_type == DeviceType.CUDA]
    if not names:  # a step always launches kernels: the profiler did not see this library's
        return None
    copies = sum(1 for n in names if n.startswith(("Memcpy", "Memset")))
    return {"kernels": (len(names) - copies) / steps, "copies": copies / steps,
            "method": "measured: torch.profiler (CUPTI), all kernels of the process"}
