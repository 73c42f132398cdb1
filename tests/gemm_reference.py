"""The tiled GEMM's test inputs and float64 NumPy reference, shared by the CPU emulation
(test_gemm_emulated.py) and the device tests (test_gpu_gemm.py)."""
import numpy as np

EPS32 = np.finfo(np.float32).eps


def operands(rng, m, n, k, trans_a, trans_b, has_bias, offset=0):
    """Random host ``a``, ``b``, ``bias`` (or None) and ``out`` in the storage the transposes
    imply, each ``offset`` floats past a 16-byte boundary (0: aligned)."""
    def array(*shape):
        size = int(np.prod(shape))
        flat = np.empty(size + 4, np.float32)
        start = (-flat.ctypes.data // 4) % 4 + offset
        view = flat[start:start + size].reshape(shape)
        view[...] = rng.standard_normal(shape)
        return view

    a = array(k, m) if trans_a else array(m, k)
    b = array(n, k) if trans_b else array(k, n)
    return a, b, array(n) if has_bias else None, array(m, n)


def assert_gemm_close(out, a, b, trans_a, trans_b, bias, relu, what=""):
    """``out`` equals ``act(op(a) @ op(b) + bias)`` in float64 within float32 rounding of a
    K-term sum: 2 (K + 2) eps (|op(a)| |op(b)| + |bias|) per element."""
    op_a = (a.T if trans_a else a).astype(np.float64)
    op_b = (b.T if trans_b else b).astype(np.float64)
    want = op_a @ op_b + (0 if bias is None else bias)
    bound = np.abs(op_a) @ np.abs(op_b) + (0 if bias is None else np.abs(bias))
    if relu:
        want = np.maximum(want, 0)
    err = np.abs(out - want)
    assert np.isfinite(out).all(), f"{what}: outputs not written (still NaN)"
    assert (err <= 2 * (op_a.shape[1] + 2) * EPS32 * bound + 1e-30).all(), \
        f"{what}: max error {err.max():.3g}"
