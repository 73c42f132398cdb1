"""The engines that move the bytes: MPI (mpi4py) for host arrays, NCCL (``cupy.cuda.nccl``)
for device arrays. Both are imported lazily: importing gpunet never imports mpi4py or CuPy."""
from __future__ import annotations

import numpy as np

from ..backend import nccl as backend_nccl

OPS = ("sum", "min", "max")


class MpiEngine:
    """Collectives on NumPy arrays through an mpi4py communicator (in place)."""

    def __init__(self, mpi_comm):
        from mpi4py import MPI

        self.MPI, self.comm = MPI, mpi_comm

    def allreduce_(self, a: np.ndarray, op: str) -> None:
        MPI = self.MPI
        self.comm.Allreduce(MPI.IN_PLACE, a, op={"sum": MPI.SUM, "min": MPI.MIN,
                                                 "max": MPI.MAX}[op])

    def broadcast_(self, a: np.ndarray, root: int) -> None:
        self.comm.Bcast(a, root=root)

    def abort(self) -> None:
        pass  # MPI_Abort itself ends every rank


class NcclEngine:
    """Collectives on CuPy arrays through NCCL, on the current CUDA stream (so that a step
    captured as a CUDA graph captures its all-reduce too). The communicator's unique id is
    made on rank 0 and broadcast over MPI (the Horovod pattern)."""

    def __init__(self, mpi_comm, rank, size, xp):
        nccl = backend_nccl()
        self.xp, self.nccl = xp, nccl
        uid = mpi_comm.bcast(nccl.get_unique_id() if rank == 0 else None, root=0)
        self.comm = nccl.NcclCommunicator(size, uid, rank)
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32,
                      np.dtype(np.float64): nccl.NCCL_FLOAT64,
                      np.dtype(np.int32): nccl.NCCL_INT32, np.dtype(np.int64): nccl.NCCL_INT64}
        self.ops = {"sum": nccl.NCCL_SUM, "min": nccl.NCCL_MIN, "max": nccl.NCCL_MAX}

    def _type(self, a):
        if not a.flags.c_contiguous or a.dtype not in self.types:
            raise TypeError(f"NCCL collectives take C-contiguous arrays of "
                            f"{', '.join(map(str, self.types))}; got {a.dtype}, "
                            f"contiguous={a.flags.c_contiguous}")
        return self.types[a.dtype]

    def allreduce_(self, a, op: str) -> None:
        stream = self.xp.cuda.get_current_stream().ptr
        self.comm.allReduce(a.data.ptr, a.data.ptr, a.size, self._type(a), self.ops[op],
                            stream)

    def broadcast_(self, a, root: int) -> None:
        stream = self.xp.cuda.get_current_stream()
        self.comm.bcast(a.data.ptr, a.size, self._type(a), root, stream.ptr)
        stream.synchronize()  # rare (start of a run); later work may run on another stream

    def abort(self) -> None:
        self.comm.abort()  # frees kernels waiting on a rank that will not come
