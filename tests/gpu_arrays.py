"""Array helpers shared by the GPU test files: random inputs, poisoned and misaligned device
arrays, comparison against the NumPy reference, and the reference of one linear layer."""
import numpy as np
import pytest

from gpunet.ops.numpy_ops import NumpyOps

cupy = pytest.importorskip("cupy")
REF = NumpyOps(np)


def normal(rng, *shape, scale=1.0, dtype=np.float32):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def poisoned(shape, dtype=np.float32):
    """A device array of NaN: an output a kernel fails to write stays NaN."""
    return cupy.full(shape, np.nan, dtype=dtype)


def host(a):
    return cupy.asnumpy(a) if isinstance(a, cupy.ndarray) else np.asarray(a)


def assert_close(got, want, rtol, what=""):
    """``got`` (device or host) equals ``want`` to ``rtol`` of the largest ``|want|``."""
    got, want = host(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite values (a poisoned output not written?)"
    scale = float(np.abs(want).max()) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(scale, 1e-30),
                               err_msg=what)


def misaligned(values):
    """A C-contiguous device copy of ``values`` whose data pointer is 4 bytes off 16."""
    flat = cupy.empty(values.size + 1, dtype=values.dtype)[1:]
    assert flat.data.ptr % 16 != 0
    view = flat.reshape(values.shape)
    view[...] = cupy.asarray(values)
    return view


def reference_linear(x, w, b, g, relu):
    """The NumPy reference of one linear layer's forward (``out``) and backward (``gw``,
    ``gb``, ``gx``, and ``gz`` with a ReLU) for upstream gradient ``g``."""
    want = {"out": np.empty((len(x), len(w)), np.float32), "gw": np.empty_like(w),
            "gb": np.empty_like(b), "gx": np.empty_like(x), "gz": np.empty_like(g)}
    (REF.linear_relu_forward if relu else REF.linear_forward)(x, w, b, want["out"])
    if relu:
        REF.linear_relu_backward(g, want["out"], x, w, want["gw"], want["gb"], want["gz"],
                                 want["gx"])
    else:
        REF.linear_backward(g, x, w, want["gw"], want["gb"], want["gx"])
    return want
