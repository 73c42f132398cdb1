"""The :class:`Communicator`: one rank of a data-parallel job, and how a failed rank ends
the job (printed once, the communicator aborted, never a hang)."""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from .engines import OPS

#: A failing rank other than 0 waits this long before reporting: when rank 0 fails too
#: (an error every rank meets, such as a bad argument), its abort ends the job first and
#: the error is printed once.
REPORT_DELAY = 1.5
#: After its report a failing rank waits this long before the abort: the launcher forwards a
#: rank's output through its own process, and an abort that reaches it first loses the report.
DRAIN_DELAY = 0.5


class Communicator:
    """``rank`` of ``size`` processes (``local_rank`` on its machine), training on
    ``backend``. Collectives run in place on every rank in the same order: host (NumPy)
    arrays over MPI, device (CuPy) arrays over NCCL on the current stream."""

    def __init__(self, mpi_comm, backend, local_rank, host_engine, device_engine=None):
        self.mpi = mpi_comm
        self.rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()
        self.local_rank = local_rank
        self.backend = backend
        self._host, self._device = host_engine, device_engine

    def __repr__(self) -> str:
        engine = "NCCL" if self._device is not None else "MPI"
        return (f"Communicator(rank {self.rank} of {self.size}, local rank {self.local_rank}, "
                f"{self.backend.name}, {engine})")

    @property
    def is_root(self) -> bool:
        """True on rank 0, the rank that prints and writes files."""
        return self.rank == 0

    def _engine(self, a):
        if isinstance(a, np.ndarray):
            return self._host
        if self._device is None:
            raise TypeError(f"this communicator reduces NumPy arrays (MPI); got a "
                            f"{type(a).__module__}.{type(a).__name__} (device arrays need "
                            f"the NCCL engine: gpunet.distributed.init(device='gpu'))")
        return self._device

    def allreduce_(self, a, op: str = "sum"):
        """Replace ``a`` on every rank by its elementwise ``op`` (sum, min, max) over the
        ranks; returns ``a``."""
        if op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {op!r}")
        self._engine(a).allreduce_(a, op)
        return a

    def broadcast_(self, a, root: int = 0):
        """Overwrite ``a`` on every rank with rank ``root``'s; returns ``a``."""
        self._engine(a).broadcast_(a, root)
        return a

    def barrier(self) -> None:
        """Wait until every rank has called it."""
        self.mpi.Barrier()

    def abort(self, code: int = 1):
        """End every rank of the job now with exit status ``code`` (NCCL first, so no
        device kernel waits on a rank that will not come); never returns."""
        try:
            if self._device is not None:
                self._device.abort()
        finally:
            self.mpi.Abort(code)

    def fail(self, message: str, code: int = 1):
        """Report ``message`` naming this rank on stderr (printed once when every rank
        fails alike: see :data:`REPORT_DELAY`), let the launcher forward it
        (:data:`DRAIN_DELAY`), then :meth:`abort` with ``code``."""
        try:
            if self.rank != 0:
                time.sleep(REPORT_DELAY)  # a signal here: the job is ending already
            sys.stderr.write(f"[rank {self.rank} of {self.size}] {message}\n")
            sys.stderr.flush()
            time.sleep(DRAIN_DELAY)
        finally:
            try:
                self.abort(code)
            finally:
                os._exit(code)
