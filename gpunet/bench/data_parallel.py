"""``gpunet bench --distributed``: the sweep as one of N data-parallel ranks (see
``GpunetVariant.distribute``)."""
from __future__ import annotations

import dataclasses

from .common import BenchError

DISTRIBUTED_STEPS = 20  # every rank must take the same steps: no per-rank probe
DISTRIBUTABLE = ("numpy", "cupy-unfused", "cupy-fused")  # GpunetVariant's eager step


def join(args):
    """This process's communicator (BenchError, saying how to launch, without a launcher)."""
    from ..distributed import init
    from ..distributed.launch import DistributedError

    try:
        return init(device=args.device)
    except DistributedError as exc:
        raise BenchError(str(exc)) from None


def distributed_settings(comm, args, settings):
    """The settings of a distributed sweep (fixed steps, no epochs); BenchError for what it
    cannot run."""
    uneven = [b for b in settings.batch_sizes if b % comm.size]
    if uneven:
        raise BenchError(f"--distributed over {comm.size} ranks needs batch sizes that are "
                         f"multiples of {comm.size}, got {uneven}")
    others = [v for v in (args.variants or ()) if v not in DISTRIBUTABLE]
    if others:
        raise BenchError(f"--distributed runs {', '.join(DISTRIBUTABLE)}, not {others}")
    return dataclasses.replace(settings, steps=settings.steps or DISTRIBUTED_STEPS, epochs=0)
