"""Device memory: host buffers handed out by a pool, the way CuPy's pool hands out blocks.

Every array's memory comes from :func:`allocate` (512-byte aligned, as CuPy's pool rounds
to ``ALLOCATION_UNIT_SIZE = 512``, ``cupy/cuda/memory.pyx`` line 40). Inside a capture an
allocation raises :class:`CaptureAllocationError` (gpunet's rule, stricter than CuPy's relaxed
capture mode) unless a test relaxes it as CuPy does (:func:`relaxed_capture`).

Host transfers follow ``cupy/cuda/memory.pyx``: a synchronous copy or an asynchronous
host-to-device or device-to-host copy on a capturing current stream raises RuntimeError
(``copy_from_device`` line 543, ``copy_from_host`` 590, ``copy_from_host_async`` 617,
``copy_to_host`` 688, ``copy_to_host_async`` 715); CUDA never sees it, the capture stays
valid. Device-to-device asynchronous copies are captured like kernels.
"""
from __future__ import annotations

import contextlib
import weakref

import numpy as np

from . import _errors, _streams

ALIGNMENT = 512


class OutOfMemoryError(MemoryError):
    """``cupy.cuda.memory.OutOfMemoryError(size, total, limit=0)``."""

    def __init__(self, size, total, limit=0):
        self._size, self._total, self._limit = size, total, limit
        if limit == 0:
            msg = 'Out of memory allocating {:,} bytes'.format(size)
            if total != -1:
                msg += ' (allocated so far: {:,} bytes).'.format(total)
        else:
            msg = ('Out of memory allocating {:,} bytes (allocated so far: {:,} bytes, '
                   'limit set to: {:,} bytes).'.format(size, total, limit))
        super().__init__(msg)

    def __reduce__(self):
        return type(self), (self._size, self._total, self._limit)


class Memory:
    """One allocation: ``ptr`` (its device address: here a host address), ``size``."""

    def __init__(self, size: int):
        self.size = size
        self.buffer = np.empty(size + ALIGNMENT, dtype=np.uint8)
        self.start = -self.buffer.ctypes.data % ALIGNMENT
        self.ptr = self.buffer.ctypes.data + self.start
        self.device_id = 0


class MemoryPointer:
    """``cupy.cuda.MemoryPointer``: ``mem`` (the allocation), ``ptr`` (the address),
    ``device_id``."""

    def __init__(self, mem: Memory, offset: int):
        self.mem, self.offset = mem, offset
        self.ptr = mem.ptr + offset
        self.device_id = mem.device_id

    def __int__(self):
        return self.ptr

    def __getattr__(self, name):
        raise _errors.missing("cupy.cuda.MemoryPointer", name)

    def _bytes(self, size: int) -> np.ndarray:
        """The ``size`` bytes from here, as a view of the allocation's buffer."""
        if self.offset + size > self.mem.size:
            raise _errors.CUDARuntimeError(
                f"cudaErrorInvalidValue: {size} bytes from offset {self.offset} of a "
                f"{self.mem.size}-byte allocation")
        start = self.mem.start + self.offset
        return self.mem.buffer[start:start + size]

    def copy_from_device_async(self, src: MemoryPointer, size: int, stream=None) -> None:
        """``memory.pyx`` line 553: ``size`` bytes from ``src`` on ``stream`` (the current
        one by default), recorded when it captures."""
        if size > 0:
            _streams.issue(lambda: np.copyto(self._bytes(size), src._bytes(size)), stream)


class MemoryPool:
    """``cupy.get_default_memory_pool()``: counts the bytes of live arrays; a limit makes
    larger requests raise :class:`OutOfMemoryError`."""

    def __init__(self):
        self._used = 0
        self._limit = 0
        self._total = 0

    def malloc(self, size: int) -> MemoryPointer:
        return MemoryPointer(allocate(size), 0)

    def used_bytes(self) -> int:
        return self._used

    def total_bytes(self) -> int:
        return self._used

    def free_bytes(self) -> int:
        return 0

    def n_free_blocks(self) -> int:
        return 0

    def free_all_blocks(self, stream=None) -> None:
        """Nothing is cached: freed blocks went back at once."""

    def set_limit(self, size=None, fraction=None) -> None:
        if fraction is not None:
            size = int(fraction * 80 * 2**30)
        self._limit = int(size or 0)

    def get_limit(self) -> int:
        return self._limit

    def _release(self, size: int) -> None:
        self._used -= size


class PinnedMemoryPool:
    """``cupy.get_default_pinned_memory_pool()`` (nothing pinned in the stand-in)."""

    def free_all_blocks(self) -> None:
        pass

    def n_free_blocks(self) -> int:
        return 0


pool = MemoryPool()
pinned_pool = PinnedMemoryPool()


class _Relaxed:
    depth = 0


_relaxed = _Relaxed()


@contextlib.contextmanager
def relaxed_capture():
    """Inside the block an allocation during a capture is allowed, as CuPy's relaxed capture
    mode allows it (the test must keep such arrays alive while the graph lives)."""
    _relaxed.depth += 1
    try:
        yield
    finally:
        _relaxed.depth -= 1


def allocate(size: int) -> Memory:
    """A new allocation of ``size`` bytes (refused inside a capture, see the module text)."""
    if _streams.capturing() and not _relaxed.depth:
        raise _errors.CaptureAllocationError(
            f"an allocation of {size:,} bytes from the memory pool inside a stream capture: "
            f"gpunet allocates nothing inside a capture (an array freed after the recording "
            f"would return to the pool while the graph still writes it)")
    if pool._limit and pool._used + size > pool._limit:
        raise OutOfMemoryError(size, pool._used, pool._limit)
    try:
        mem = Memory(size)
    except MemoryError:
        raise OutOfMemoryError(size, pool._used) from None
    pool._used += size
    weakref.finalize(mem, pool._release, size)
    return mem


def check_transfer(what: str, stream=None) -> None:
    """A host transfer on ``stream`` (default: the current one): refused while it captures,
    as ``cupy/cuda/memory.pyx`` refuses it."""
    stream = stream or _streams.get_current_stream()
    if stream.is_capturing():
        raise RuntimeError(f'the current stream is capturing, so {what} are disallowed')
    if stream.ptr == 0 and _streams.capturing():
        _streams._check_legacy(what)


def set_allocator(allocator=None) -> None:
    """``cupy.cuda.set_allocator``: the stand-in has one allocator; accepted and ignored."""
