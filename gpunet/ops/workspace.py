"""The one buffer cache: arrays reused across calls, so a step allocates nothing after warm-up.

A buffer is named by its owner's purpose (``"bias_partial"``, ``"adam_corrections"``, ...)
plus its shape and dtype; asking again for the same triple returns the same array, with
whatever the last user left in it. Buffers handed to a user must never come from here.
"""
from __future__ import annotations

import numpy as np


class Workspace:
    """Reusable arrays of one array module ``xp``, keyed by ``(name, shape, dtype)``."""

    def __init__(self, xp):
        self.xp = xp
        self._buffers: dict = {}

    def __len__(self) -> int:
        return len(self._buffers)

    def get(self, name: str, shape, dtype):
        """An uninitialised array for ``name``; the same one on every call with this key."""
        key = (name, tuple(shape), np.dtype(dtype))
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = self.xp.empty(key[1], dtype=key[2])
        return buf

    def like(self, name: str, array):
        """:meth:`get` with ``array``'s shape and dtype."""
        return self.get(name, array.shape, array.dtype)

    def zeros(self, name: str, shape, dtype):
        """Like :meth:`get`, but zero-filled when first created (for counters that the
        kernels themselves reset after use)."""
        key = (name, tuple(shape), np.dtype(dtype))
        if key not in self._buffers:
            self._buffers[key] = self.xp.zeros(key[1], dtype=key[2])
        return self._buffers[key]

    def clear(self) -> None:
        """Drop every buffer (e.g. after a model moved to another device)."""
        self._buffers.clear()
