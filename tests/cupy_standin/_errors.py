"""The errors the stand-in raises where CuPy or CUDA would, and its own two rules."""
from __future__ import annotations


class CUDARuntimeError(RuntimeError):
    """``cupy_backends.cuda.api.runtime.CUDARuntimeError``: a CUDA runtime call failed."""


class CaptureAllocationError(RuntimeError):
    """gpunet's rule, enforced by the stand-in: nothing is allocated inside a capture (CuPy's
    relaxed capture mode would let the pool grow, ``cupy/cuda/stream.pyx`` lines 395-403,
    and the array could return to the pool while the graph still writes it)."""


class MissingName(AttributeError):
    """gpunet called a CuPy name the stand-in does not provide."""


def illegal_during_capture(capture, what: str):
    """CUDA refuses ``what`` while ``capture`` is open and invalidates the capture."""
    capture.invalid = what
    raise CUDARuntimeError(f"cudaErrorStreamCaptureUnsupported: operation not permitted when "
                           f"stream is capturing ({what})")


def missing(module: str, name: str):
    """The error for ``module.name`` absent from the stand-in."""
    return MissingName(f"the CuPy stand-in has no {module}.{name}: gpunet (or a test) called a "
                       f"CuPy name the stand-in does not provide; add it to "
                       f"tests/cupy_standin with CuPy 14.2's signature")
