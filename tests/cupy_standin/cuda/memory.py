"""``cupy.cuda.memory``: the pool, pointers and the out-of-memory error."""
from .._memory import (Memory, MemoryPointer, MemoryPool, OutOfMemoryError,  # noqa: F401
                       set_allocator)
