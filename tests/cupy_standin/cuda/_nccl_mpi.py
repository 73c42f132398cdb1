"""NCCL's API (``cupy_backends/cuda/libs/nccl.pyx``, v14.2.0) over MPI: a communicator is a
duplicate of ``MPI.COMM_WORLD`` whose ranks checked that they hold the same unique id; a
collective reads and writes device memory by pointer on the stream it is given (recorded
when that stream captures, so a replayed graph runs it again)."""
from __future__ import annotations

import ctypes
import os

import numpy as np

from .. import _streams

NCCL_UNIQUE_ID_BYTES = 128
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN, NCCL_AVG = 0, 1, 2, 3, 4
NCCL_INT8 = NCCL_CHAR = 0
NCCL_UINT8 = 1
NCCL_INT32 = NCCL_INT = 2
NCCL_UINT32 = 3
NCCL_INT64 = 4
NCCL_UINT64 = 5
NCCL_FLOAT16 = NCCL_HALF = 6
NCCL_FLOAT32 = NCCL_FLOAT = 7
NCCL_FLOAT64 = NCCL_DOUBLE = 8
_DTYPES = {NCCL_INT8: np.int8, NCCL_UINT8: np.uint8, NCCL_INT32: np.int32,
           NCCL_UINT32: np.uint32, NCCL_INT64: np.int64, NCCL_UINT64: np.uint64,
           NCCL_FLOAT16: np.float16, NCCL_FLOAT32: np.float32, NCCL_FLOAT64: np.float64}


class NcclError(RuntimeError):
    """``cupy.cuda.nccl.NcclError``."""


def get_version() -> int:
    return 22800


def get_build_version() -> int:
    return 22800


def get_unique_id() -> bytes:
    """128 random bytes (CuPy 14 returns bytes, ``nccl.pyx`` line 159)."""
    return os.urandom(NCCL_UNIQUE_ID_BYTES)


def _view(ptr: int, count: int, datatype: int) -> np.ndarray:
    dtype = np.dtype(_DTYPES[datatype])
    if count == 0:
        return np.empty(0, dtype)
    buffer = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(buffer, dtype=dtype)


class NcclCommunicator:
    """``NcclCommunicator(ndev, commId, rank, config=None)``: collective over every rank."""

    def __init__(self, ndev, commId, rank, config=None):
        from mpi4py import MPI

        if not isinstance(commId, bytes) or len(commId) != NCCL_UNIQUE_ID_BYTES:
            raise ValueError(f"commId length {len(commId)} != {NCCL_UNIQUE_ID_BYTES}.")
        world = MPI.COMM_WORLD
        if ndev != world.Get_size() or rank != world.Get_rank():
            raise NcclError(f"ncclInvalidArgument: rank {rank} of {ndev} in an MPI job of "
                            f"{world.Get_size()} where this process is rank {world.Get_rank()}")
        self._mpi = MPI
        self._comm = world.Dup()
        if len(set(self._comm.allgather(commId))) != 1:
            raise NcclError("ncclInvalidUsage: the ranks were given different unique ids")
        self._ndev, self._rank = ndev, rank

    def _live(self):
        if self._comm is None:
            raise NcclError("ncclInvalidArgument: the communicator was destroyed or aborted")
        return self._comm

    def device_id(self) -> int:
        from .. import _device
        return _device.current_id()

    def rank_id(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._ndev

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        comm, MPI = self._live(), self._mpi
        send, recv = _view(sendbuf, count, datatype), _view(recvbuf, count, datatype)
        mpi_op = {NCCL_SUM: MPI.SUM, NCCL_PROD: MPI.PROD, NCCL_MAX: MPI.MAX,
                  NCCL_MIN: MPI.MIN}[op]

        def run():
            comm.Allreduce(MPI.IN_PLACE if sendbuf == recvbuf else send, recv, op=mpi_op)
        _streams.issue(run, _streams.stream_of(stream))

    def bcast(self, buff, count, datatype, root, stream):
        comm = self._live()
        data = _view(buff, count, datatype)
        _streams.issue(lambda: comm.Bcast(data, root=root), _streams.stream_of(stream))

    def destroy(self):
        if self._comm is not None:
            self._comm.Free()
            self._comm = None

    def abort(self):
        self._comm = None
