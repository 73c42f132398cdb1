"""Data-parallel training over MPI and NCCL: ``comm = gpunet.distributed.init()`` under a
launcher (``mpiexec -n 4 python train.py``), then ``gpunet.fit(..., distributed=comm)``.
mpi4py and CuPy are imported by ``init``, never by ``import gpunet``."""
from .comm import REPORT_DELAY, Communicator
from .launch import HOW_TO_LAUNCH, DistributedError, init, launcher_ranks

__all__ = ["Communicator", "DistributedError", "HOW_TO_LAUNCH", "REPORT_DELAY", "init",
           "launcher_ranks"]
