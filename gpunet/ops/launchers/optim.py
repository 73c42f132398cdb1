"""Launcher of ``kernels/optim.cu``: one fused SGD or Adam/AdamW update over the flat buffer.

NumPy references: ``NumpyOps.sgd_update``, ``NumpyOps.adam_update``. Tests:
tests/test_cupy_ops.py (``test_sgd_update``, ``test_adam_update``), tests/test_gpu_path.py.
The learning rate and step count are 1-element device arrays, read by the kernels. A stack's
flat buffer (``ops/models.py``) updates in one launch of the ``*_models`` kernels: its
learning rates an n-element device array, other per-model values n float64 device arrays
(None where shared), and the segment table from :func:`segments`.
"""
from __future__ import annotations

import numpy as np

from ..kernels import KernelSource, blocks, vector_count, THREADS
from ..models import is_per_model

MAX_MODELS = 512  # models of a stack whose arguments a block keeps in shared memory

SOURCE = KernelSource("optim", kernels=("sgd_update", "adam_update", "sgd_update_models",
                                        "adam_update_models"),
                      defines=(("MAX_MODELS", MAX_MODELS),))


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


def segments(layout, xp):
    """``(seg_start, seg_size)`` int64 device arrays of a :class:`ModelLayout`: the flat
    offset of each segment (and the end), and its values per model."""
    starts = [start for start, _ in layout.segments] + [layout.size]
    sizes = [size for _, size in layout.segments]
    return xp.asarray(np.array(starts, dtype=np.int64)), xp.asarray(np.array(sizes,
                                                                            dtype=np.int64))


def _per_model(value):
    """A per-model device array as the kernel's pointer and its shared value: (array, 0) or
    (None, the number)."""
    return (value, 0.0) if is_per_model(value) else (None, float(value))


def sgd_update_models(param, grad, velocity, lr, table, models, *, momentum, weight_decay,
                      nesterov) -> None:
    """:meth:`NumpyOps.sgd_update` of a stack in one launch: ``lr`` (n,) float32,
    ``momentum`` and ``weight_decay`` numbers or (n,) float64 device arrays, ``velocity``
    None when no model has momentum; ``table`` from :func:`segments`."""
    (momenta, momentum_all), (decays, decay_all) = _per_model(momentum), _per_model(weight_decay)
    starts, sizes = table
    SOURCE.function("sgd_update_models")(
        (blocks(param.size),), (THREADS,),
        (param, grad, velocity, lr, np.int64(param.size), momenta, decays,
         np.float64(momentum_all), np.float64(decay_all), np.int32(bool(nesterov)), starts,
         sizes, np.int32(len(sizes)), np.int32(models)))


def adam_update_models(param, grad, exp_avg, exp_avg_sq, lr, step, table, models, *, beta1,
                       beta2, eps, weight_decay, decoupled) -> None:
    """:meth:`NumpyOps.adam_update` of a stack in one launch (per-model values as in
    :func:`sgd_update_models`)."""
    values = [_per_model(v) for v in (beta1, beta2, eps, weight_decay)]
    starts, sizes = table
    SOURCE.function("adam_update_models")(
        (blocks(param.size),), (THREADS,),
        (param, grad, exp_avg, exp_avg_sq, lr, step, np.int64(param.size),
         *(array for array, _ in values), *(np.float64(shared) for _, shared in values),
         np.int32(bool(decoupled)), starts, sizes, np.int32(len(sizes)), np.int32(models)))
