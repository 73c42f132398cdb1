"""The one buffer cache: arrays reused across calls, so a step allocates nothing after warm-up.

The ops own one, and every layer and loss owns one of its own (its buffers die with it). A
buffer is named by its owner's purpose (``"out"``, ``"bias_partial"``, ...) plus its shape and
dtype; asking again for the same triple returns the same array, with whatever the last user
left in it. Each name keeps its :data:`SHAPES_PER_NAME` most recently used shapes (a training
batch, the smaller last batch, an evaluation batch, ...), so varying shapes cannot pile up
memory. Arrays handed to a user must never come from here.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

SHAPES_PER_NAME = 8  # e.g. the ops' per-layer bias partials at two batch shapes


class Workspace:
    """Reusable arrays of one array module ``xp``, keyed by ``(name, shape, dtype)``."""

    def __init__(self, xp):
        self.xp = xp
        self._buffers: dict = {}  # name -> {(shape, dtype): array}, least recently used first
        self._pins = 0

    def __len__(self) -> int:
        return sum(len(shapes) for shapes in self._buffers.values())

    def cached(self, name: str, shape, dtype, make):
        """The array for this key, made by ``make(shape, dtype)`` when first asked for (so
        its initial contents are ``make``'s)."""
        shapes = self._buffers.get(name)
        if shapes is None:
            shapes = self._buffers[name] = OrderedDict()
        key = (tuple(int(d) for d in shape), np.dtype(dtype))
        buf = shapes.get(key)
        if buf is None:
            buf = make(key[0], key[1])
            while len(shapes) >= SHAPES_PER_NAME and not self._pins:
                shapes.popitem(last=False)
            shapes[key] = buf
        else:  # an OrderedDict reorders in place (a dict's pop and insert grow its table)
            shapes.move_to_end(key)
        return buf

    def get(self, name: str, shape, dtype):
        """An uninitialised array for ``name``; the same one on every call with this key."""
        return self.cached(name, shape, dtype, self.xp.empty)

    def like(self, name: str, array):
        """:meth:`get` with ``array``'s shape and dtype."""
        return self.get(name, array.shape, array.dtype)

    def zeros(self, name: str, shape, dtype):
        """Like :meth:`get`, but zero-filled when first created (for counters that the
        kernels themselves reset after use)."""
        return self.cached(name, shape, dtype, self.xp.zeros)

    def pin(self) -> None:
        """Evict nothing until :meth:`unpin` (a captured CUDA graph writes into these
        buffers by address: they must outlive it)."""
        self._pins += 1

    def unpin(self) -> None:
        """Undo one :meth:`pin`."""
        self._pins -= 1

    def clear(self) -> None:
        """Drop every buffer (e.g. after its owner moved to another device)."""
        self._buffers.clear()
