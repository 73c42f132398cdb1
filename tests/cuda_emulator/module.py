"""A built module: launches its kernels on NumPy arrays (or anything with ``.data.ptr``),
checking every argument against the kernel's C++ parameter types first.

On a GPU an argument of the wrong width silently shifts every later one; here it is a
TypeError naming the kernel, the position, the C type expected and what was passed. Scalars
must have the parameter's exact kind and width, as CuPy passes them: ``np.int32`` for ``int``,
``np.int64`` or a Python int for ``long long``, ``np.float32`` for ``float``, ``np.float64`` or
a Python float for ``double``, ``np.uint32`` for ``unsigned int``, ``np.bool_`` or a Python
bool for ``bool``. A pointer takes a NumPy array (its data pointer, views included), an object
with ``.data.ptr``, or None; an array's dtype must match what the pointer points to, and its
address that type's alignment.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .schedule import MODES, launch_schedule

MAX_BLOCK_THREADS = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_SHARED = 48 * 1024
SCALAR_TYPES = {("i", 1): ctypes.c_int8, ("i", 2): ctypes.c_int16, ("i", 4): ctypes.c_int32,
                ("i", 8): ctypes.c_int64, ("u", 1): ctypes.c_uint8, ("u", 2): ctypes.c_uint16,
                ("u", 4): ctypes.c_uint32, ("u", 8): ctypes.c_uint64, ("f", 4): ctypes.c_float,
                ("f", 8): ctypes.c_double, ("b", 1): ctypes.c_bool}


class EmulatorError(RuntimeError):
    """A launch broke a rule of CUDA that the emulator checks (a barrier or shuffle some
    threads never reach, too much shared memory, ...); the message names the kernel."""


@dataclass(frozen=True)
class Param:
    """One kernel parameter: ``kind`` p(ointer)/i/u/f/b/o(ther), its size, the kind, size and
    alignment of what a pointer points to (of the scalar itself otherwise), its C++ type."""

    kind: str
    size: int
    element_kind: str
    element_size: int
    element_align: int
    c_type: str

    @classmethod
    def parse(cls, line: str) -> "Param":
        kind, size, element_kind, element_size, element_align, c_type = line.split(" ", 5)
        return cls(kind, int(size), element_kind, int(element_size), int(element_align), c_type)

    def expects(self) -> str:
        """What Python value a launch must pass, in words."""
        if self.kind == "p":
            element = _dtype_of(self.element_kind, self.element_size)
            return f"an array{f' of {element}' if element else ''} (or None)"
        numpy_name = f"numpy.{np.dtype(_dtype_of(self.kind, self.size)).type.__name__}"
        extra = {("i", 8): " or a Python int", ("f", 8): " or a Python float",
                 ("b", 1): " or a Python bool"}.get((self.kind, self.size), "")
        return numpy_name + extra


class LaunchRequest(ctypes.Structure):
    """runtime/scheduler.h's LaunchRequest."""

    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3),
                ("dynamic_shared", ctypes.c_ulonglong), ("mode", ctypes.c_int),
                ("resident", ctypes.c_uint), ("seed", ctypes.c_ulonglong)]


class LaunchStats(ctypes.Structure):
    """runtime/scheduler.h's LaunchStats: how much the last launch interleaved blocks."""

    _fields_ = [("switches", ctypes.c_ulonglong), ("interleavings", ctypes.c_ulonglong),
                ("preemptions", ctypes.c_ulonglong), ("max_resident", ctypes.c_uint)]


class Module:
    """The kernels of one built source, launched by name expression."""

    def __init__(self, library: Path, name_expressions: tuple[str, ...]):
        self.library = library
        self.kernels = tuple(name_expressions)
        self._lib = ctypes.CDLL(str(library))
        self._lib.emu_last_error.restype = ctypes.c_char_p
        self._launch = {}
        self._signatures = {}
        for i, name in enumerate(self.kernels):
            signature = getattr(self._lib, f"emu_signature_{i}")
            signature.restype = ctypes.c_char_p
            self._signatures[name] = tuple(
                Param.parse(line) for line in signature().decode().splitlines())
            self._launch[name] = getattr(self._lib, f"emu_launch_{i}")

    def signature(self, name: str) -> tuple[Param, ...]:
        """The parameters of kernel ``name``."""
        return self._signatures[self._known(name)]

    def launch(self, name: str, grid, block, args: tuple, shared_mem: int = 0) -> None:
        """Run kernel ``name`` over ``grid`` x ``block`` to completion under the current
        schedule (:func:`cuda_emulator.set_schedule`); raises TypeError for a wrong argument,
        ValueError for a launch a GPU refuses, EmulatorError for a rule broken while running."""
        params = self.signature(name)
        grid, block = _dims(grid, "grid", MAX_GRID, name), _dims(block, "block", MAX_BLOCK, name)
        if block[0] * block[1] * block[2] > MAX_BLOCK_THREADS:
            raise ValueError(f"{name}: a block of {block} has more than {MAX_BLOCK_THREADS} "
                             f"threads")
        if not 0 <= shared_mem <= MAX_SHARED:
            raise ValueError(f"{name}: shared_mem={shared_mem}, expected 0..{MAX_SHARED} bytes")
        values = _pack(name, params, args)
        pointers = (ctypes.c_void_p * max(1, len(values)))(
            *[ctypes.addressof(v) for v in values])
        schedule, seed = launch_schedule()
        request = LaunchRequest((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block),
                                shared_mem, MODES[schedule.mode], schedule.resident, seed)
        if self._launch[name](ctypes.byref(request), pointers) != 0:
            raise EmulatorError(self._lib.emu_last_error().decode())

    def run(self, launches) -> None:
        """``(name, grid, block, args)`` launches in order, as a stream runs them."""
        for name, grid, block, args in launches:
            self.launch(name, grid, block, args)

    @property
    def last_stats(self) -> LaunchStats:
        """How the last launch of this module was scheduled."""
        stats = LaunchStats()
        self._lib.emu_last_stats(ctypes.byref(stats))
        return stats

    def flush_coverage(self) -> None:
        """Write the line counts so far to the .gcda file (coverage builds only)."""
        self._lib.emu_coverage_flush()

    def _known(self, name: str) -> str:
        if name not in self._signatures:
            raise KeyError(f"{name!r} is not a kernel of this module; expected one of "
                           f"{self.kernels}")
        return name


def _dims(value, what: str, limits: tuple[int, int, int], kernel: str) -> tuple[int, int, int]:
    """A launch dimension as CuPy takes it (an int or 1 to 3 ints), padded with 1s."""
    items = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(items) <= 3 or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
        raise ValueError(f"{kernel}: {what} must be an int or 1 to 3 ints, got {value!r}")
    dims = tuple(int(v) for v in items) + (1,) * (3 - len(items))
    if any(not 1 <= d <= limit for d, limit in zip(dims, limits)):
        raise ValueError(f"{kernel}: {what} {dims} is outside 1..{limits} per dimension")
    return dims


def _dtype_of(kind: str, size: int) -> str | None:
    """The NumPy dtype name of a C scalar kind and size (None for void and structs)."""
    if (kind, size) not in SCALAR_TYPES:
        return None
    return np.dtype(SCALAR_TYPES[kind, size]).name


def _pack(kernel: str, params: tuple[Param, ...], args) -> list:
    """Each argument as a ctypes value of its parameter's type (TypeError if it is not one)."""
    args = tuple(args)
    if len(args) != len(params):
        raise TypeError(f"{kernel} takes {len(params)} arguments "
                        f"({', '.join(p.c_type for p in params)}); {len(args)} given")
    values = []
    for position, (param, value) in enumerate(zip(params, args), 1):
        problem = _pointer(param, value) if param.kind == "p" else _scalar(param, value)
        if isinstance(problem, str):
            raise TypeError(f"{kernel}: argument {position} of {len(params)} is "
                            f"{param.c_type}: expected {param.expects()}; got {problem}")
        values.append(problem)
    return values


def _pointer(param: Param, value):
    """A c_void_p for an array argument, or what is wrong with it."""
    if value is None:
        return ctypes.c_void_p(0)
    if isinstance(value, np.ndarray):
        address = value.__array_interface__["data"][0]
    elif isinstance(getattr(getattr(value, "data", None), "ptr", None), int):
        address = value.data.ptr
    else:
        return _describe(value)
    expected = _dtype_of(param.element_kind, param.element_size)
    dtype = getattr(value, "dtype", None)
    if expected and dtype is not None and np.dtype(dtype) != np.dtype(expected):
        return f"{_describe(value)} of {np.dtype(dtype)}"
    if address % param.element_align:
        return f"{_describe(value)} at address {address:#x}, not {param.element_align}-byte aligned"
    return ctypes.c_void_p(address)


def _scalar(param: Param, value):
    """A ctypes scalar of the parameter's exact type, or what is wrong with the value."""
    if isinstance(value, (bool, np.bool_)):
        kind, size = "b", 1
    elif isinstance(value, np.generic):
        kind, size = value.dtype.kind, value.dtype.itemsize
    elif isinstance(value, int):
        kind, size = "i", 8   # CuPy passes a Python int as long long
    elif isinstance(value, float):
        kind, size = "f", 8   # and a Python float as double
    else:
        return _describe(value)
    if (kind, size) != (param.kind, param.size):
        return _describe(value)
    if isinstance(value, int) and not -2**63 <= value < 2**63:  # ctypes would wrap it
        return f"{_describe(value)}, outside long long"
    return SCALAR_TYPES[kind, size](value.item() if isinstance(value, np.generic) else value)


def _describe(value) -> str:
    """A passed value in a few words: its type, and its value or shape."""
    if isinstance(value, np.ndarray):
        return f"a numpy.ndarray of shape {value.shape}"
    kind = type(value)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    if isinstance(value, np.generic):
        return f"{name}({value.item()!r})"
    if isinstance(value, (int, float)):
        return f"{name} {value!r}"
    return f"a {name}"
