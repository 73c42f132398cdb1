"""Finds the CUDA C sources in ``kernels/``, compiles them on first use, sizes launch grids.

Each ``kernels/NAME.cu`` has one launcher, ``gpunet/ops/launchers/NAME.py``, that declares a
:class:`KernelSource`: the kernels it fetches (NVRTC name expressions) and its launch sizes,
which reach the compiler as ``-D`` options, so a size is written once, in Python. CuPy is
imported only when a kernel is first fetched; nothing compiles at import.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

BASE_OPTIONS = ("--std=c++17",)
THREADS = 256        # threads per block of the 1-D grid-stride kernels
MAX_BLOCKS = 4096    # grid-stride loops cover the rest
INDEX_LIMIT = 2**31 - 2**20  # int32 indices, with room for a grid-stride step past the end


@dataclass(frozen=True)
class KernelSource:
    """One ``kernels/NAME.cu``: its kernels and the launch sizes compiled into it."""

    name: str
    kernels: tuple[str, ...]
    defines: tuple[tuple[str, int], ...] = ()

    @property
    def options(self) -> tuple[str, ...]:
        """NVRTC options: the base ones plus ``-DNAME=VALUE`` for each launch size."""
        return BASE_OPTIONS + tuple(f"-D{key}={value}" for key, value in self.defines)

    def read(self) -> str:
        """The CUDA C source text."""
        return (kernel_dir() / f"{self.name}.cu").read_text()

    def function(self, expression: str):
        """The compiled kernel ``expression`` (compiled once per process; CuPy caches the
        binary on disk)."""
        if expression not in self.kernels:
            raise KeyError(f"{expression!r} is not a kernel of {self.name}.cu; expected one "
                           f"of {self.kernels}")
        return _function(self, expression)

    def warmup(self) -> None:
        """Compile the module and fetch every kernel now."""
        for expression in self.kernels:
            self.function(expression).compile()


@functools.lru_cache(maxsize=None)
def _function(source: KernelSource, expression: str):
    """One kernel object per (module, kernel): launches reuse it."""
    return _compiled(source).get_function(expression)


@functools.lru_cache(maxsize=None)
def _compiled(source: KernelSource):
    import cupy

    return cupy.RawModule(code=source.read(), options=source.options,
                          name_expressions=source.kernels)


def kernel_dir() -> Path:
    """The folder holding the ``.cu`` files: ``gpunet/kernels`` in an installed wheel,
    the repository's top-level ``kernels/`` in a source checkout or editable install."""
    package = Path(__file__).resolve().parent.parent
    candidates = (package / "kernels", package.parent / "kernels")
    for folder in candidates:
        if any(folder.glob("*.cu")):
            return folder
    raise FileNotFoundError(
        f"gpunet's CUDA kernel sources (*.cu) were not found in "
        f"{' or '.join(str(c) for c in candidates)}; reinstall gpunet"
    )


def blocks(items: int, threads: int = THREADS) -> int:
    """Blocks of ``threads`` for a grid-stride loop over ``items`` (at least 1)."""
    return max(1, min(-(-items // threads), MAX_BLOCKS))


def vector_count(n: int, *arrays) -> int:
    """How many float4 groups a kernel may use: ``n // 4`` if every pointer is 16-byte
    aligned, else 0 (the kernels' scalar loops then take everything)."""
    return n // 4 if all(a.data.ptr % 16 == 0 for a in arrays) else 0


def fits_int32(*shapes) -> bool:
    """Whether every dimension fits the kernels' int32 row/column indices."""
    return all(dim <= INDEX_LIMIT for shape in shapes for dim in shape)


def flag(value) -> str:
    """A C++ template argument for a Python truth value."""
    return "true" if value else "false"
