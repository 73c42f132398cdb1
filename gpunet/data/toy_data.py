"""The lecture's small problems, generated in memory: XOR, two spirals, sine regression.

Each returns NumPy ``(X, y)`` with float32 ``X``. Classification labels are int64 0/1 (for
``CrossEntropyLoss`` with two outputs); regression targets are float32 ``(n, 1)`` (for
``MSELoss``). ``seed=None`` draws fresh randomness; an int makes the data reproducible.
Samples come in random order, so any slice is a fair validation split.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_int, check_number


def xor(n=None, *, noise=0.0, seed=None):
    """XOR: the corners of the unit square, label 1 where exactly one coordinate is 1.

    ``n=None`` gives the four points in order; an int ``n`` gives ``n`` corners (each about
    ``n/4`` times, shuffled) with Gaussian ``noise`` (standard deviation) on the coordinates.
    No line separates the classes, so a single-layer model cannot fit it.
    """
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    labels = np.array([0, 1, 1, 0], dtype=np.int64)
    noise = check_number(noise, "noise", 0)
    rng = np.random.default_rng(seed)
    if n is None:
        which = np.arange(4)
    else:
        which = rng.permutation(np.arange(check_int(n, "n", 1)) % 4)
    X = corners[which] + (noise * rng.standard_normal((len(which), 2))).astype(np.float32)
    return X, labels[which]


def spirals(n=400, *, noise=0.1, turns=1.5, seed=None):
    """Two interleaved spirals in the plane (``n`` points, half per class, shuffled).

    Class ``k`` follows radius ``t`` at angle ``2*pi*turns*t + k*pi`` for ``t`` in (0, 1];
    ``noise`` is the standard deviation of Gaussian noise added to the coordinates.
    """
    n = check_int(n, "n", 2)
    noise = check_number(noise, "noise", 0)
    turns = check_number(turns, "turns", 0, low_open=True)
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    t = (np.arange(n) // 2 + 1) / ((n + 1) // 2)
    angle = 2 * np.pi * turns * t + np.pi * labels
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    X += noise * rng.standard_normal(X.shape)
    order = rng.permutation(n)
    return X[order].astype(np.float32), labels[order].astype(np.int64)


def sine(n=200, *, noise=0.0, seed=None):
    """Regression of ``y = sin(x)`` for ``x`` uniform in [-pi, pi]: ``X`` and ``y`` (n, 1).

    ``noise`` is the standard deviation of Gaussian noise added to ``y``.
    """
    n = check_int(n, "n", 1)
    noise = check_number(noise, "noise", 0)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-np.pi, np.pi, size=(n, 1))
    y = np.sin(x) + noise * rng.standard_normal((n, 1))
    return x.astype(np.float32), y.astype(np.float32)
