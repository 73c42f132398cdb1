"""``cupy.cuda``: devices, streams, events, graphs, memory, the runtime, NVRTC's version and NCCL."""
from __future__ import annotations

from .. import _device, _errors
from .._device import Device  # noqa: F401
from .._memory import Memory, MemoryPointer, set_allocator  # noqa: F401
from .._streams import (Event, Graph, Stream, get_current_stream,  # noqa: F401
                        get_elapsed_time)
from . import device, memory, nvrtc, runtime  # noqa: F401


def is_available() -> bool:
    try:
        return _device.count() > 0
    except _errors.CUDARuntimeError:
        return False


def __getattr__(name):
    raise _errors.missing("cupy.cuda", name)
