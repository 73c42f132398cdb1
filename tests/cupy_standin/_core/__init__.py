"""``cupy._core``: the cuBLAS compute-type switch (``set_compute_type``/``get_compute_type``,
``cupy/_core/_routines_linalg.pyx`` lines 70-86 and 448-457)."""
from .._gemm import get_compute_type, set_compute_type  # noqa: F401
from . import _routines_linalg  # noqa: F401
