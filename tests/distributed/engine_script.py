"""Run under mpiexec by tests/test_distributed.py: the device engine's collectives one by one
(sum, min and max of each type, a broadcast from the last rank, a strided array refused);
with ``fail``, the last rank then fails, so the job ends through the engine's abort.

    python engine_script.py DEVICE [fail]

With ``GPUNET_STANDIN_PROCESS=1`` the GPU is the CuPy stand-in (``tests/standin.py``).
"""
import os
import sys

import numpy as np

if os.environ.get("GPUNET_STANDIN_PROCESS") == "1":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import standin  # noqa: F401  (makes the stand-in this process's cupy)

import gpunet as gn  # noqa: E402


def main(device, fail=False):
    comm = gn.distributed.init(device)
    xp, size, last = comm.backend.xp, comm.size, comm.size - 1
    for dtype in (np.float32, np.float64, np.int32, np.int64):
        for op, want in (("sum", size * (size + 1) // 2), ("min", 1), ("max", size)):
            a = xp.full(5, comm.rank + 1, dtype=dtype)
            comm.allreduce_(a, op)
            assert gn.to_numpy(a).tolist() == [want] * 5, (dtype, op, gn.to_numpy(a))
    b = xp.arange(4, dtype=np.float32) * (comm.rank + 1)
    comm.broadcast_(b, root=last)
    assert gn.to_numpy(b).tolist() == [0, size, 2 * size, 3 * size], gn.to_numpy(b)
    try:
        comm.allreduce_(xp.zeros(8, np.float32)[::2])
    except TypeError as exc:
        assert "C-contiguous" in str(exc), exc
    else:
        raise AssertionError("a strided array was reduced")
    print(f"rank {comm.rank}: collectives ok", flush=True)
    if fail:
        comm.barrier()
        if comm.rank == last:
            raise RuntimeError(f"injected failure on rank {last}")
        comm.barrier()  # the other ranks wait here until the abort ends the job


if __name__ == "__main__":
    main(sys.argv[1], len(sys.argv) > 2)
