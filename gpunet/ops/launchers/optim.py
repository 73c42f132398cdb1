"""Launcher of ``kernels/optim.cu``: one fused SGD or Adam/AdamW update over the flat buffer.

NumPy references: ``NumpyOps.sgd_update``, ``NumpyOps.adam_update``. Tests:
tests/test_cupy_ops.py (``test_sgd_update``, ``test_adam_update``), tests/test_gpu_path.py.
The learning rate and step count are 1-element device arrays, read by the kernels.
"""
from __future__ import annotations

import numpy as np

from ..kernels import KernelSource, blocks, vector_count, THREADS

SOURCE = KernelSource("optim", kernels=("sgd_update", "adam_update"))


def _grid(n: int, *arrays) -> tuple[tuple[int], int]:
    """Blocks and the float4 group count for an update over ``n`` elements."""
    n4 = vector_count(n, *arrays)
    return (blocks(n4 + n - 4 * n4),), n4


def sgd_update(param, grad, velocity, lr, *, momentum, weight_decay, nesterov) -> None:
    """:meth:`NumpyOps.sgd_update` in one launch (``velocity`` None without momentum)."""
    n = param.size
    state = [velocity] if momentum else []
    grid, n4 = _grid(n, param, grad, *state)
    SOURCE.function("sgd_update")(
        grid, (THREADS,),
        (param, grad, velocity if momentum else param, lr, np.int64(n), np.int64(n4),
         np.float32(momentum), np.float32(weight_decay), np.int32(bool(nesterov))))


def adam_update(param, grad, exp_avg, exp_avg_sq, lr, step, *, beta1, beta2, eps,
                weight_decay, decoupled) -> None:
    """:meth:`NumpyOps.adam_update` in one launch (bias corrections in double precision)."""
    n = param.size
    grid, n4 = _grid(n, param, grad, exp_avg, exp_avg_sq)
    SOURCE.function("adam_update")(
        grid, (THREADS,),
        (param, grad, exp_avg, exp_avg_sq, lr, step, np.int64(n), np.int64(n4),
         np.float64(beta1), np.float64(beta2), np.float64(eps), np.float64(weight_decay),
         np.int32(bool(decoupled))))
