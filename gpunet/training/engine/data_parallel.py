"""What ``fit(..., distributed=comm)`` does on each rank of a data-parallel job: start from
rank 0's weights, sum the flat gradient over the ranks between backward and the update
(scaled so the update is the single-process update on the global batch), and reduce the
epoch's metrics. The communicator comes from :func:`gpunet.distributed.init`."""
from __future__ import annotations

import numpy as np


class DataParallel:
    """Rank ``comm.rank`` of ``comm.size`` training ``optimizer``'s flat parameters."""

    def __init__(self, comm, model, optimizer):
        for name in ("rank", "size", "allreduce_", "broadcast_"):
            if not hasattr(comm, name):
                raise TypeError(f"distributed must be a communicator from "
                                f"gpunet.distributed.init() (it lacks {name!r}), got "
                                f"{type(comm).__name__}")
        backend = getattr(comm, "backend", model.backend)
        if backend is not model.backend:
            raise ValueError(f"the communicator was made for {backend.name}, the model is on "
                             f"{model.backend.name}: pass device=... to "
                             f"gpunet.distributed.init to match the model")
        self.comm, self.optimizer = comm, optimizer
        self.rank, self.size = comm.rank, comm.size
        self.shard = None  # the loader's Shard, set by fit

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def shared_seed(self, seed):
        """``seed``, or one drawn on rank 0 and shared: every rank must shuffle alike."""
        if seed is not None:
            return seed
        value = np.array([np.random.SeedSequence().entropy % 2**31], dtype=np.int64)
        return int(self.comm.broadcast_(value)[0])

    def broadcast_state(self) -> None:
        """Rank 0's parameters and optimizer buffers on every rank."""
        self.comm.broadcast_(self.optimizer.flat.data)
        for buffer in self.optimizer.buffers.values():
            self.comm.broadcast_(buffer)

    def hook(self, weight):
        """The step's gradient sync: each rank's mean gradient (over its rows) times
        ``weight`` = its rows / the global batch's, summed over the ranks: the mean
        gradient of the global batch."""
        grad, xp = self.optimizer.flat.grad, self.optimizer.backend.xp

        def sync():
            if weight != 1.0:
                xp.multiply(grad, weight, out=grad)
            self.comm.allreduce_(grad)
        return sync

    def eager_hooks(self):
        """One sync per step of an epoch (the last step's weight may differ)."""
        return [self.hook(w) for w in self.shard.weights.tolist()]

    def agree(self, *times):
        """The largest of each of ``times`` over every rank (the same numbers on each)."""
        values = np.array(times, dtype=np.float64)
        self.comm.allreduce_(values, op="max")
        return tuple(values.tolist())

    def reduce(self, loss_sum, correct_sum, seen):
        """The epoch's sums over every rank (the same numbers on each)."""
        totals = np.array([loss_sum, correct_sum, seen], dtype=np.float64)
        self.comm.allreduce_(totals)
        return float(totals[0]), int(totals[1]), int(totals[2])
