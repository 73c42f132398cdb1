"""``cupy._core._routines_linalg``: the compute types (``_routines_linalg.pyx`` lines 40-53)."""
from .._gemm import (COMPUTE_TYPE_BF16, COMPUTE_TYPE_DEFAULT, COMPUTE_TYPE_FP16,  # noqa
                         COMPUTE_TYPE_FP32, COMPUTE_TYPE_FP64, COMPUTE_TYPE_PEDANTIC,
                         COMPUTE_TYPE_TBD, COMPUTE_TYPE_TF32, get_compute_type,
                         set_compute_type)
