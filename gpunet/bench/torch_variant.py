"""The PyTorch variant of ``gpunet bench``: the same MLP, optimizer and data in PyTorch eager
on the same device, timed with the same clocks."""
from __future__ import annotations

import contextlib

from .variants import (EventClock, HostClock, Variant, Workload, count_cuda_launches,
                       mlp_layers, warm_last_batch)


class TorchVariant(Variant):
    """The same MLP in PyTorch eager on the same device: data already there,
    ``zero_grad(set_to_none=True)``, the fused optimizer where PyTorch has one on CUDA."""

    name = "torch"

    def __init__(self, device: str, workload: Workload, tf32: bool):
        import torch

        self.torch, self.device, self.workload, self.tf32 = torch, device, workload, tf32
        self.dev = torch.device("cuda" if device == "gpu" else "cpu")
        self.oom_errors = (MemoryError, torch.cuda.OutOfMemoryError)
        torch.manual_seed(workload.seed)
        self.model = torch.nn.Sequential(
            *mlp_layers(workload.widths, torch.nn.Linear, torch.nn.ReLU)).to(self.dev)
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.optimizer, self.optimizer_impl = self._make_optimizer()
        X, y = workload.host_dataset()
        self.X = torch.from_numpy(X).to(self.dev)
        self.y = torch.from_numpy(y).to(self.dev)
        self._loss = None

    def _make_optimizer(self):
        """Fused on CUDA where this PyTorch has it, else the multi-tensor (foreach) path."""
        torch, params = self.torch, list(self.model.parameters())
        cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
               "adamw": torch.optim.AdamW}[self.workload.optimizer]

        def make(**kw):
            return cls(params, **self.workload.hyperparameters, **kw)

        if self.dev.type == "cuda":
            try:
                return make(fused=True), "fused"
            except (TypeError, RuntimeError, ValueError):
                pass
        return make(foreach=True), "foreach"

    def details(self):
        return {"torch": self.torch.__version__, "optimizer": type(self.optimizer).__name__,
                "optimizer_impl": self.optimizer_impl,
                "threads": self.torch.get_num_threads()}

    @contextlib.contextmanager
    def active(self):
        matmul = self.torch.backends.cuda.matmul
        saved = matmul.allow_tf32
        matmul.allow_tf32 = self.tf32
        try:
            yield
        finally:
            matmul.allow_tf32 = saved

    def train_step(self, xb, yb):
        self.optimizer.zero_grad(set_to_none=True)
        self._loss = self.loss_fn(self.model(xb), yb)
        self._loss.backward()
        self.optimizer.step()

    def step_at(self, batch_size):
        index = self.torch.arange(batch_size, device=self.dev) % self.workload.samples
        xb, yb = self.X[index], self.y[index]
        return lambda: self.train_step(xb, yb)

    def epoch_at(self, batch_size):
        n, torch = self.workload.samples, self.torch
        warm_last_batch(self, batch_size)

        def epoch():
            order = torch.randperm(n, device=self.dev)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                self.train_step(self.X[idx], self.y[idx])
        return epoch

    def last_loss(self):
        return self._loss.item()

    def synchronize(self):
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def clock(self):
        if self.dev.type == "cpu":
            return HostClock()
        cuda = self.torch.cuda
        return EventClock(lambda: cuda.Event(enable_timing=True),
                          lambda a, b: a.elapsed_time(b), self.synchronize)

    def count_launches(self, step):
        if self.dev.type == "cpu":
            return None
        return count_cuda_launches(step, self.synchronize)

    def release(self):
        if self.dev.type == "cuda":
            self.synchronize()
            self.torch.cuda.empty_cache()
