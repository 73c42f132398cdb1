"""GPU path: the primitives as cuBLAS GEMMs plus the fused kernels of ``kernels/*.cu``.

The common case (float32, C-contiguous, valid shapes, int labels) launches the fused kernels;
anything else (float64 for gradient checks, strided views, ...) falls back to the reference
code of :class:`NumpyOps` running on CuPy, which is also the benchmarks' "unfused" variant
(``NumpyOps(cupy)``). Reductions are deterministic: partial sums per block, then one pass in
a fixed order. Kernel arguments are cast to the C types the kernels declare (CuPy would pass
Python ints as ``long long`` and floats as ``double``).
"""
from __future__ import annotations

import functools

import cupy
import numpy as np

from .kernels import COMPILE_OPTIONS, MODULES, check_kernel, gemm_name, read_source
from .numpy_ops import NumpyOps

# Which GEMM serves a product of M x N x K multiply-adds: the first (upper bound, route) whose
# bound is >= M * N * K, else cuBLAS. "cublas" = cuBLAS (+ the fused bias/ReLU epilogue),
# "tiled" = kernels/gemm.cu (one launch, graph-capturable). Not yet measured on a device, so
# every size takes cuBLAS; benchmarks/gpu_check.py prints the table its timings suggest.
GEMM_ROUTES: tuple = ()

THREADS = 256           # threads per block of the 1-D kernels
MAX_BLOCKS = 4096       # grid-stride loops cover the rest
BIAS_GRAD_ROWS = 8      # BR in linear_relu.cu: rows of threads per backward block
BIAS_GRAD_COLS = 32     # BW in linear_relu.cu: columns per backward block
MAX_BIAS_PARTS = 128    # row-blocks of partial bias sums (fixed per shape: deterministic)
SOFTMAX_ROWS = 8        # ROWS_PER_BLOCK in softmax_xent.cu (one warp per row)
FINISH_THREADS = 256    # FINAL_THREADS in softmax_xent.cu
GEMM_TILE = 64          # TILE in gemm.cu, block of 16 x 16 threads
MAX_GRID_Y = 65535      # CUDA's limit on gridDim.y (the tiled GEMM's column tiles)
NO_ERROR = 0xFFFFFFFFFFFFFFFF  # NO_ERROR in softmax_xent.cu
INT32_MAX = 2**31 - 1
LABEL_TYPES = {np.dtype(np.int32): "int", np.dtype(np.int64): "long long"}


@functools.lru_cache(maxsize=None)
def _raw_module(module: str):
    """One ``kernels/MODULE.cu`` compiled (once per process; CuPy caches it on disk)."""
    return cupy.RawModule(code=read_source(module), options=COMPILE_OPTIONS,
                          name_expressions=MODULES[module])


@functools.lru_cache(maxsize=None)
def get_kernel(module: str, name: str):
    """The compiled kernel ``name`` (a name expression of ``MODULES[module]``)."""
    check_kernel(module, name)
    return _raw_module(module).get_function(name)


def warmup() -> None:
    """Compile every module and fetch every kernel (call before timing)."""
    for module, names in MODULES.items():
        for name in names:
            get_kernel(module, name).compile()


def _flag(value) -> str:
    return "true" if value else "false"


def _blocks(items: int, threads: int = THREADS) -> int:
    return max(1, min(-(-items // threads), MAX_BLOCKS))


def _is_f32(*arrays) -> bool:
    """True when every array is a C-contiguous float32 CuPy array small enough for int32
    kernel indices (None entries are optional arguments and pass)."""
    return all(a is None or (isinstance(a, cupy.ndarray) and a.dtype == np.float32
                             and a.flags.c_contiguous and max(a.shape, default=1) <= INT32_MAX)
               for a in arrays)


def _vector_count(n: int, *arrays) -> int:
    """How many float4 groups a kernel may use: n // 4 if every pointer is 16-byte aligned."""
    aligned = all(a.data.ptr % 16 == 0 for a in arrays)
    return n // 4 if aligned else 0


class CupyOps(NumpyOps):
    """CuPy primitives: fused kernels for float32, the reference code for everything else."""

    name = "cupy"

    def __init__(self):
        super().__init__(cupy)
        self.gemm_routes = GEMM_ROUTES
        self._scratch = {}
        self._error_word = None
        self._label_checks = set()  # class counts checked on the device since check_errors

    # -- helpers -------------------------------------------------------------------------
    def _buffer(self, name, shape, dtype):
        """A workspace array reused across calls of the same shape (no per-step allocation)."""
        key = (name, tuple(shape), np.dtype(dtype))
        buf = self._scratch.get(key)
        if buf is None:
            buf = self._scratch[key] = cupy.empty(shape, dtype=dtype)
        return buf

    def _errors(self):
        if self._error_word is None:
            self._error_word = cupy.full(1, np.uint64(NO_ERROR), dtype=cupy.uint64)
        return self._error_word

    def gemm_route(self, m: int, n: int, k: int) -> str:
        """``"tiled"`` or ``"cublas"`` for an (m x k) @ (k x n) product (see GEMM_ROUTES)."""
        work = m * n * k
        for bound, route in self.gemm_routes:
            if work <= bound:
                return route
        return "cublas"

    def _gemm(self, a, b, out, trans_a, trans_b, bias=None, relu=False):
        """``out = act(op(a) @ op(b) + bias)`` through the routed GEMM (shapes checked)."""
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        grid = (-(-m // GEMM_TILE), -(-n // GEMM_TILE))
        # An empty output (grid size 0) or too many column tiles cannot launch: cuBLAS then.
        if 0 < min(grid) and grid[1] <= MAX_GRID_Y and self.gemm_route(m, n, k) == "tiled":
            kernel = get_kernel("gemm", gemm_name(trans_a, trans_b, bias is not None, relu))
            kernel(grid, (16, 16), (a, b, out if bias is None else bias, out,
                                    np.int32(m), np.int32(n), np.int32(k)))
            return out
        cupy.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)
        if bias is not None or relu:
            self._bias_act(out, bias, relu)
        return out

    def _bias_act(self, out, bias, relu):
        """In place ``out = act(out + bias)``: one vectorised pass over the GEMM's output."""
        n, cols = out.size, out.shape[1]
        n4 = _vector_count(n, out, *([bias] if bias is not None else [])) if cols % 4 == 0 else 0
        kernel = get_kernel("linear_relu",
                            f"bias_act_inplace<{_flag(bias is not None)}, {_flag(relu)}>")
        kernel((_blocks(n4 + n - 4 * n4),), (THREADS,),
               (out, out if bias is None else bias, np.int64(n), np.int64(n4), np.int64(cols)))

    def _bias_grad(self, grad_out, out, grad_z, grad_bias):
        """``grad_z = grad_out * (out > 0)`` when ``out`` is given, and ``grad_bias`` = the
        batch sum of the (masked) gradient, in two deterministic passes."""
        rows, cols = grad_out.shape
        relu = out is not None
        parts = max(1, min(-(-rows // BIAS_GRAD_ROWS), MAX_BIAS_PARTS))
        partial = self._buffer("bias_partial", (parts, cols), np.float32)
        kernel = get_kernel("linear_relu", f"mask_bias_grad_partial<{_flag(relu)}>")
        grid = (-(-cols // BIAS_GRAD_COLS), parts)
        kernel(grid, (BIAS_GRAD_COLS, BIAS_GRAD_ROWS),
               (grad_out, out if relu else grad_out, grad_z if relu else grad_out, partial,
                np.int32(rows), np.int32(cols)))
        if grad_bias is not None:
            get_kernel("linear_relu", "sum_partials")(
                (_blocks(cols),), (THREADS,),
                (partial, grad_bias, np.int32(parts), np.int32(cols)))

    # -- linear layers -------------------------------------------------------------------
    @staticmethod
    def _linear_shapes_ok(x, weight, bias, out):
        return (x.ndim == 2 and weight.ndim == 2 and x.shape[1] == weight.shape[1]
                and out.shape == (x.shape[0], weight.shape[0])
                and (bias is None or bias.shape == (weight.shape[0],)))

    def linear_forward(self, x, weight, bias, out):
        if not (_is_f32(x, weight, bias, out) and self._linear_shapes_ok(x, weight, bias, out)):
            return super().linear_forward(x, weight, bias, out)
        return self._gemm(x, weight, out, False, True, bias=bias)

    def linear_relu_forward(self, x, weight, bias, out):
        if not (_is_f32(x, weight, bias, out) and self._linear_shapes_ok(x, weight, bias, out)):
            return super().linear_relu_forward(x, weight, bias, out)
        return self._gemm(x, weight, out, False, True, bias=bias, relu=True)

    def _backward_ok(self, grad_out, x, weight, grad_weight, grad_bias, grad_x, *saved):
        batch, n_out = grad_out.shape if grad_out.ndim == 2 else (-1, -1)
        return (_is_f32(grad_out, x, weight, grad_weight, grad_bias, grad_x, *saved)
                and self._linear_shapes_ok(x, weight, grad_bias, grad_out)
                and grad_weight.shape == weight.shape
                and (grad_x is None or grad_x.shape == x.shape)
                and all(s.shape == (batch, n_out) for s in saved))

    def _weight_and_input_grads(self, grad_z, x, weight, grad_weight, grad_x):
        self._gemm(grad_z, x, grad_weight, True, False)
        if grad_x is not None:
            self._gemm(grad_z, weight, grad_x, False, False)
        return grad_x

    def linear_backward(self, grad_out, x, weight, grad_weight, grad_bias, grad_x=None):
        if not self._backward_ok(grad_out, x, weight, grad_weight, grad_bias, grad_x):
            return super().linear_backward(grad_out, x, weight, grad_weight, grad_bias, grad_x)
        if grad_bias is not None:
            self._bias_grad(grad_out, None, None, grad_bias)
        return self._weight_and_input_grads(grad_out, x, weight, grad_weight, grad_x)

    def linear_relu_backward(self, grad_out, out, x, weight, grad_weight, grad_bias,
                             grad_z, grad_x=None):
        if not self._backward_ok(grad_out, x, weight, grad_weight, grad_bias, grad_x,
                                 out, grad_z):
            return super().linear_relu_backward(grad_out, out, x, weight, grad_weight,
                                                grad_bias, grad_z, grad_x)
        self._bias_grad(grad_out, out, grad_z, grad_bias)
        return self._weight_and_input_grads(grad_z, x, weight, grad_weight, grad_x)

    # -- loss ----------------------------------------------------------------------------
    @staticmethod
    def _device_labels(labels):
        """``labels`` as int32/int64 C-contiguous (other integer dtypes are converted)."""
        if labels.dtype not in LABEL_TYPES or not labels.flags.c_contiguous:
            labels = cupy.ascontiguousarray(labels, dtype=np.int64)
        return labels

    def check_labels(self, labels, num_classes):
        """Flag labels outside ``[0, num_classes)`` on the device, without a host sync;
        :meth:`check_errors` raises the ValueError that names the first one."""
        labels = self._device_labels(labels)
        kernel = get_kernel("softmax_xent",
                            f"check_label_range<{LABEL_TYPES[labels.dtype]}>")
        kernel((_blocks(labels.size),), (THREADS,),
               (labels, np.int64(labels.size), np.int64(num_classes), self._errors()))
        self._label_checks.add(int(num_classes))

    def check_errors(self):
        """Raise ValueError for the first bad label flagged since the last call (one host
        sync, and none at all when no label was checked on the device since)."""
        if not self._label_checks:
            return
        classes, self._label_checks = sorted(self._label_checks), set()
        word = int(self._error_word.get()[0])
        if word == NO_ERROR:
            return
        self._error_word.fill(np.uint64(NO_ERROR))
        index, label = word >> 32, ((word & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
        bound = classes[0] if len(classes) == 1 else " or ".join(map(str, classes))
        raise ValueError(
            f"label {label} at index {index} of a batch is out of range: expected labels in "
            f"[0, {bound}) for {bound} classes"
        )

    def softmax_cross_entropy(self, logits, labels, grad):
        fused = (_is_f32(logits, grad) and logits.ndim == 2 and grad.shape == logits.shape
                 and isinstance(labels, cupy.ndarray) and labels.dtype.kind in "iu"
                 and labels.shape == logits.shape[:1] and logits.shape[0] > 0)
        if not fused:
            return super().softmax_cross_entropy(logits, labels, grad)
        labels = self._device_labels(labels)
        batch, num_classes = logits.shape
        row_loss = self._buffer("row_loss", (batch,), np.float32)
        row_hit = self._buffer("row_hit", (batch,), np.int32)
        loss = cupy.empty((), dtype=np.float32)
        correct = cupy.empty((), dtype=np.int64)
        rows_kernel = get_kernel("softmax_xent",
                                 f"softmax_xent_rows<{LABEL_TYPES[labels.dtype]}>")
        rows_kernel((_blocks(batch, SOFTMAX_ROWS),), (SOFTMAX_ROWS * 32,),
                    (logits, labels, grad, row_loss, row_hit, self._errors(),
                     np.int32(batch), np.int32(num_classes), np.float32(1.0 / batch)))
        self._label_checks.add(int(num_classes))
        get_kernel("softmax_xent", "softmax_xent_finish")(
            (1,), (FINISH_THREADS,), (row_loss, row_hit, loss, correct, np.int32(batch)))
        return loss, correct

    # -- optimizer updates over the flat parameter buffer --------------------------------
    def sgd_update(self, param, grad, velocity, lr, *, momentum, weight_decay, nesterov):
        state = [velocity] if momentum else []
        if not (_is_f32(param, grad, lr, *state) and all(s is not None for s in state)
                and all(a.size == param.size for a in [grad, *state]) and lr.size >= 1):
            return super().sgd_update(param, grad, velocity, lr, momentum=momentum,
                                      weight_decay=weight_decay, nesterov=nesterov)
        n = param.size
        n4 = _vector_count(n, param, grad, *state)
        get_kernel("optim", "sgd_update")(
            (_blocks(n4 + n - 4 * n4),), (THREADS,),
            (param, grad, velocity if momentum else param, lr, np.int64(n), np.int64(n4),
             np.float32(momentum), np.float32(weight_decay), np.int32(bool(nesterov))))

    def adam_update(self, param, grad, exp_avg, exp_avg_sq, lr, step, *, beta1, beta2, eps,
                    weight_decay, decoupled):
        arrays = (param, grad, exp_avg, exp_avg_sq)
        if not (_is_f32(*arrays, lr, step) and all(a.size == param.size for a in arrays)
                and lr.size >= 1 and step.size >= 1):
            return super().adam_update(param, grad, exp_avg, exp_avg_sq, lr, step,
                                       beta1=beta1, beta2=beta2, eps=eps,
                                       weight_decay=weight_decay, decoupled=decoupled)
        n = param.size
        n4 = _vector_count(n, *arrays)
        get_kernel("optim", "adam_update")(
            (_blocks(n4 + n - 4 * n4),), (THREADS,),
            (param, grad, exp_avg, exp_avg_sq, lr, step, np.int64(n), np.int64(n4),
             np.float32(beta1), np.float32(beta2), np.float32(1 - beta1),
             np.float32(1 - beta2), np.float32(eps), np.float32(weight_decay),
             np.int32(bool(decoupled))))
