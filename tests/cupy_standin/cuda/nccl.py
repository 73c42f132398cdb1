"""``cupy.cuda.nccl``: NCCL's collectives over MPI (mpi4py), one rank per process.

As in CuPy (``cupy/cuda/nccl.py``), the module holds ``available`` and, only when NCCL
loads, the bindings: with ``GPUNET_STANDIN_NCCL=off`` it is a CuPy whose NCCL is missing,
``available = False`` and nothing else."""
import os

available = os.environ.get("GPUNET_STANDIN_NCCL", "on") != "off"

if available:
    from ._nccl_mpi import *  # noqa: F401,F403
