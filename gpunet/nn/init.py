"""Weight initialisation: He (Kaiming) for ReLU networks, Xavier (Glorot) for sigmoid/tanh.

Weights are drawn on the host from the seeded NumPy generator of the parameter's backend, so
``gpunet.manual_seed(s)`` gives the same initial model on the CPU and on the GPU.
"""
from __future__ import annotations

import math

from ..backend import backend_of


def _fans(shape):
    fan_out, fan_in = shape
    return fan_in, fan_out


def kaiming_normal(shape, rng):
    """N(0, 2 / fan_in): keeps activation variance steady through ReLU layers."""
    fan_in, _ = _fans(shape)
    return rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)


def xavier_uniform(shape, rng):
    """U(-a, a), a = sqrt(6 / (fan_in + fan_out)): for sigmoid and tanh layers."""
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


SCHEMES = {"kaiming": kaiming_normal, "xavier": xavier_uniform}


def _fill(param, values):
    param.data[...] = backend_of(param.data).asarray(values, dtype=param.data.dtype)


def kaiming_normal_(param):
    """Re-draw a (out, in) weight parameter in place with He initialisation."""
    _fill(param, kaiming_normal(param.shape, backend_of(param.data).host_rng))


def xavier_uniform_(param):
    """Re-draw a (out, in) weight parameter in place with Xavier/Glorot initialisation."""
    _fill(param, xavier_uniform(param.shape, backend_of(param.data).host_rng))


def zeros_(param):
    """Set a parameter to zero in place."""
    param.data[...] = 0
