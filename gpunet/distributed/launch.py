"""``init()``: join the MPI job this process was launched in (``mpiexec``, ``srun``) and
return its :class:`~gpunet.distributed.comm.Communicator`. On the GPU each rank takes the
device of its local rank and the gradients travel over NCCL; on the CPU over MPI."""
from __future__ import annotations

import os
import sys
import traceback

from ..backend import get_backend, select_gpu
from .comm import Communicator

#: Environment variables an MPI launcher sets on each rank: (rank, local rank).
LAUNCHER_VARIABLES = (("PMI_RANK", "MPI_LOCALRANKID"),                 # MPICH (Hydra)
                      ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"),  # Open MPI
                      ("PMIX_RANK", None),                                # PMIx launchers
                      ("SLURM_PROCID", "SLURM_LOCALID"))                 # Slurm's srun
HOW_TO_LAUNCH = ("start one process per rank with an MPI launcher: mpiexec -n 2 gpunet train "
                 "--distributed ... (on Slurm: srun -n 2 --mpi=pmi2 gpunet train "
                 "--distributed ...)")
INSTALL_HINT = "pip install 'gpunet[distributed]' (mpi4py and MPICH)"


class DistributedError(RuntimeError):
    """Data-parallel training cannot start: no launcher, no MPI, or no device."""


def launcher_ranks(environ=None) -> tuple[int, int] | None:
    """``(rank, local rank)`` from the launcher's environment, or None outside a launcher."""
    environ = os.environ if environ is None else environ
    for rank_name, local_name in LAUNCHER_VARIABLES:
        if rank_name in environ:
            local = environ.get(local_name) if local_name else None
            return int(environ[rank_name]), int(local) if local is not None else 0
    return None


def init(device="auto") -> Communicator:
    """Join the job; ``device``: ``"cpu"``, ``"gpu"`` (one per local rank) or ``"auto"``.

    Installs an exception hook: an exception no one catches on one rank prints naming the
    rank and aborts the job (the other ranks would wait for it forever)."""
    ranks = launcher_ranks()
    if ranks is None:
        raise DistributedError(f"distributed training needs an MPI launcher, and this "
                               f"process was started without one; {HOW_TO_LAUNCH}")
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(f"distributed training needs mpi4py ({exc}); "
                               f"{INSTALL_HINT}") from None
    mpi = MPI.COMM_WORLD
    local_rank = ranks[1]
    if device != "cpu":
        select_gpu(local_rank)
    backend = get_backend(device)
    from .engines import MpiEngine, NcclEngine

    device_engine = None
    if backend.name == "gpu":
        try:
            device_engine = NcclEngine(mpi, mpi.Get_rank(), mpi.Get_size(), backend.xp)
        except ImportError as exc:
            raise DistributedError(f"the GPU engine needs NCCL ({exc}); install NCCL for "
                                   f"your CUDA (pip install nvidia-nccl-cu13) or train "
                                   f"with --device cpu") from None
    comm = Communicator(mpi, backend, local_rank, MpiEngine(mpi), device_engine)
    install_excepthook(comm)
    return comm


def install_excepthook(comm: Communicator) -> None:
    """Uncaught exceptions on this rank end the whole job (see :meth:`Communicator.fail`)."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt):
            return comm.fail("interrupted", 130)
        text = "".join(traceback.format_exception(kind, value, tb)).rstrip()
        try:
            comm.fail(text, 1)
        except BaseException:
            previous(kind, value, tb)

    sys.excepthook = hook
