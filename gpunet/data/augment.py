"""Training-set augmentation for images: more samples made from the ones there are."""
from __future__ import annotations

import numpy as np

#: (rows, columns) each copy of :func:`with_shifts` moves its image by: up, down, left, right.
SHIFTS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _shifted(images, rows, columns):
    """``images`` (n, height, width) moved by ``rows`` and ``columns`` pixels, the pixels
    moved in from outside set to 0 (the background of MNIST-like images)."""
    moved = np.zeros_like(images)
    height, width = images.shape[1:]
    into = moved[:, max(rows, 0):height + min(rows, 0), max(columns, 0):width + min(columns, 0)]
    into[...] = images[:, max(-rows, 0):height + min(-rows, 0),
                       max(-columns, 0):width + min(-columns, 0)]
    return moved


def with_shifts(images, labels):
    """``(images, labels)`` followed by four copies of each image moved one pixel up, down,
    left and right (5x the samples; labels repeated). ``images`` is (n, height, width), as
    the IDX datasets load; augment the training part only, after holding out validation."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3:
        raise ValueError(f"images must be (n, height, width), got shape {images.shape}")
    if len(labels) != len(images):
        raise ValueError(f"images and labels must have the same number of samples, got "
                         f"{len(images)} and {len(labels)}")
    copies = [images] + [_shifted(images, rows, columns) for rows, columns in SHIFTS]
    return np.concatenate(copies), np.concatenate([labels] * len(copies))
