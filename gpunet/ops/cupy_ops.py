"""GPU path: each primitive checks its case, calls a fused launcher, else falls back.

The common case (float32, C-contiguous, int32-indexable shapes, int labels) runs cuBLAS GEMMs
plus the fused kernels of ``kernels/*.cu`` through their launchers (``launchers/``); anything
else (float64 for gradient checks, strided views, ...) falls back to the reference code of
:class:`NumpyOps` running on CuPy, which is also the benchmarks' "unfused" variant
(``NumpyOps(cupy)``). Reductions are deterministic: partial sums per block, then one pass in
a fixed order.
"""
from __future__ import annotations

import cupy
import numpy as np

from .kernels import fits_int32
from .launchers import clip_grad, gemm, linear_relu, optim, softmax_xent, step
from .models import is_per_model, used
from .numpy_ops import NumpyOps

LAUNCHERS = (linear_relu, softmax_xent, optim, gemm, step, clip_grad)

# Which GEMM serves a product of M x N x K multiply-adds: the first (upper bound, route) whose
# bound is >= M * N * K, else cuBLAS. "cublas" = cuBLAS (+ the fused bias/ReLU epilogue),
# "tiled" = kernels/gemm.cu (one launch, graph-capturable). Not yet measured on a device, so
# every size takes cuBLAS; benchmarks/gpu_check.py prints the table its timings suggest.
GEMM_ROUTES: tuple = ()

# Error-word slots: labels checked as a whole (check_labels) and labels of a loss's batch.
LABEL_CHECK, BATCH = 0, 1
WHERE = {LABEL_CHECK: "", BATCH: " of a batch"}


def warmup() -> None:
    """Compile every kernel module and fetch every kernel (call before timing)."""
    for launcher in LAUNCHERS:
        launcher.SOURCE.warmup()


def _is_f32(*arrays) -> bool:
    """True when every array is a C-contiguous float32 CuPy array small enough for int32
    kernel indices (None entries are optional arguments and pass)."""
    return all(a is None or (isinstance(a, cupy.ndarray) and a.dtype == np.float32
                             and a.flags.c_contiguous and fits_int32(a.shape))
               for a in arrays)


def _rows_f32(a) -> bool:
    """A float32 CuPy array whose rows are contiguous (a stack's strided layer input)."""
    return (isinstance(a, cupy.ndarray) and a.dtype == np.float32 and a.strides[-1] == 4
            and fits_int32(a.shape))


def _same_size(size, *arrays) -> bool:
    return all(a is not None and a.size == size for a in arrays)


def _device_labels(labels):
    """``labels`` as int32/int64 C-contiguous (other integer dtypes are converted)."""
    if labels.dtype not in softmax_xent.LABEL_TYPES or not labels.flags.c_contiguous:
        labels = cupy.ascontiguousarray(labels, dtype=np.int64)
    return labels


class CupyOps(NumpyOps):
    """CuPy primitives: fused kernels for float32, the reference code for everything else."""

    name = "cupy"

    def __init__(self):
        super().__init__(cupy)
        self.gemm_routes = GEMM_ROUTES
        self._error_words = None
        self._pending_checks = {}  # error slot -> class counts checked since check_errors
        self._segment_tables: dict = {}  # a stack's ModelLayout -> its segment table

    def _error_word(self, slot):
        if self._error_words is None:
            self._error_words = cupy.full(len(WHERE), softmax_xent.NO_ERROR, dtype=cupy.uint64)
        return self._error_words[slot:slot + 1]

    def gemm_route(self, m: int, n: int, k: int) -> str:
        """``"tiled"`` or ``"cublas"`` for an (m x k) @ (k x n) product (see GEMM_ROUTES)."""
        work = m * n * k
        for bound, route in self.gemm_routes:
            if work <= bound:
                return route
        return "cublas"

    def _gemm(self, a, b, out, trans_a, trans_b, bias=None, relu=False):
        """``out = act(op(a) @ op(b) + bias)`` through the routed GEMM; 3-D operands are a
        stack's models (``nn/stack.py``): one batched cuBLAS GEMM, then the epilogue with a
        bias row per model."""
        m, n = out.shape[-2:]
        k = a.shape[-2] if trans_a else a.shape[-1]
        batches = out.shape[0] if out.ndim == 3 else 1
        if gemm.can_launch(m, n, batches) and self.gemm_route(m, n, k) == "tiled":
            if out.ndim == 2:
                return gemm.gemm(a, b, out, trans_a, trans_b, self.workspace, bias, relu)
            staged = self._contiguous("gemm_out", out, copy=False)
            gemm.gemm(self._contiguous("gemm_a", a), self._contiguous("gemm_b", b), staged,
                      trans_a, trans_b, self.workspace, bias, relu)
            if staged is not out:
                cupy.copyto(out, staged)
            return out
        cupy.matmul(a.swapaxes(-1, -2) if trans_a else a, b.swapaxes(-1, -2) if trans_b else b,
                    out=out)
        if bias is not None or relu:
            linear_relu.bias_act(out, bias, relu)
        return out

    def _contiguous(self, name, a, copy=True):
        """``a``, or a C-contiguous workspace array of its shape (holding a copy of it with
        ``copy``): the tiled GEMM reads and writes whole per-model matrices."""
        if a.flags.c_contiguous:
            return a
        staged = self.workspace.like(name, a)
        if copy:
            cupy.copyto(staged, a)
        return staged

    # -- linear layers -------------------------------------------------------------------
    @staticmethod
    def _forward_ok(x, weight, bias, out):
        """One model's (batch, in) input, or a stack's (models, batch, in) with a weight,
        bias and output per model; a stack's input may be a view with strided rows."""
        lead = weight.shape[:-2]
        return (_is_f32(weight, bias, out) and x.ndim == weight.ndim
                and (_is_f32(x) if x.ndim == 2 else x.ndim == 3 and _rows_f32(x))
                and x.shape[:-2] == lead and x.shape[-1] == weight.shape[-1]
                and out.shape == lead + (x.shape[-2], weight.shape[-2])
                and (bias is None or bias.shape == lead + weight.shape[-2:-1]))

    def linear_forward(self, x, weight, bias, out):
        if not self._forward_ok(x, weight, bias, out):
            return super().linear_forward(x, weight, bias, out)
        return self._gemm(x, weight, out, False, True, bias=bias)

    def linear_relu_forward(self, x, weight, bias, out):
        if not self._forward_ok(x, weight, bias, out):
            return super().linear_relu_forward(x, weight, bias, out)
        return self._gemm(x, weight, out, False, True, bias=bias, relu=True)

    def _backward_ok(self, grad_out, x, weight, grad_weight, grad_bias, grad_x, *saved):
        return (_is_f32(grad_out, grad_weight, *saved)
                and (grad_x is None or (_is_f32(grad_x) if grad_x.ndim == 2
                                        else _rows_f32(grad_x)))
                and self._forward_ok(x, weight, grad_bias, grad_out)
                and grad_weight.shape == weight.shape
                and (grad_x is None or grad_x.shape == x.shape)
                and all(s.shape == grad_out.shape for s in saved))

    def _weight_and_input_grads(self, grad_z, x, weight, grad_weight, grad_x):
        self._gemm(grad_z, x, grad_weight, True, False)
        if grad_x is not None:
            self._gemm(grad_z, weight, grad_x, False, False)
        return grad_x

    def linear_backward(self, grad_out, x, weight, grad_weight, grad_bias, grad_x=None):
        if not self._backward_ok(grad_out, x, weight, grad_weight, grad_bias, grad_x):
            return super().linear_backward(grad_out, x, weight, grad_weight, grad_bias, grad_x)
        if grad_bias is not None:
            linear_relu.mask_bias_grad(grad_out, None, None, grad_bias, self.workspace)
        return self._weight_and_input_grads(grad_out, x, weight, grad_weight, grad_x)

    def linear_relu_backward(self, grad_out, out, x, weight, grad_weight, grad_bias,
                             grad_z, grad_x=None):
        if not self._backward_ok(grad_out, x, weight, grad_weight, grad_bias, grad_x,
                                 out, grad_z):
            return super().linear_relu_backward(grad_out, out, x, weight, grad_weight,
                                                grad_bias, grad_z, grad_x)
        linear_relu.mask_bias_grad(grad_out, out, grad_z, grad_bias, self.workspace)
        return self._weight_and_input_grads(grad_z, x, weight, grad_weight, grad_x)

    # -- loss ----------------------------------------------------------------------------
    def check_labels(self, labels, num_classes):
        """Flag labels outside ``[0, num_classes)`` on the device, without a host sync;
        :meth:`check_errors` raises the ValueError that names the first one."""
        if labels.size > softmax_xent.MAX_INDEX:
            return super().check_labels(labels, num_classes)
        softmax_xent.check_label_range(_device_labels(labels), num_classes,
                                       self._error_word(LABEL_CHECK))
        self._pending_checks.setdefault(LABEL_CHECK, set()).add(int(num_classes))

    def check_errors(self):
        """Raise ValueError for the first bad label flagged since the last call (one host
        sync, and none at all when no label was checked on the device since)."""
        if not self._pending_checks:
            return
        pending, self._pending_checks = self._pending_checks, {}
        words = self._error_words.get()
        self._error_words.fill(softmax_xent.NO_ERROR)
        for slot, word in enumerate(int(w) for w in words):
            if slot in pending and word != int(softmax_xent.NO_ERROR):
                index, label, clamped = softmax_xent.decode_error(word)
                shown = f"{'>= ' if label > 0 else '<= '}{label}" if clamped else str(label)
                bound = " or ".join(map(str, sorted(pending[slot])))
                raise ValueError(
                    f"label {shown} at index {index}{WHERE[slot]} is out of range: expected "
                    f"labels in [0, {bound}) for {bound} classes")

    def softmax_cross_entropy(self, logits, labels, grad, out=None, *, weight=None,
                              sample_weight=None, label_smoothing=0.0):
        stacked = (logits.ndim == 3 and weight is None and sample_weight is None  # models
                   and not label_smoothing and labels.ndim in (1, 2)
                   and logits.shape[0] % max(labels.size // max(logits.shape[1], 1), 1) == 0)
        fused = (_is_f32(logits, grad, weight, sample_weight)
                 and (logits.ndim == 2 or stacked) and grad.shape == logits.shape
                 and isinstance(labels, cupy.ndarray) and labels.dtype.kind in "iu"
                 and labels.shape[-1:] == logits.shape[-2:-1] and logits.shape[-2] > 0
                 and (logits.ndim == 3 or labels.ndim == 1)
                 and (weight is None or weight.shape == logits.shape[1:])
                 and (sample_weight is None or sample_weight.shape == logits.shape[:1])
                 and (out is None or (out[0].dtype == np.float32 and out[1].dtype == np.int64)))
        if not fused:
            return super().softmax_cross_entropy(logits, labels, grad, out, weight=weight,
                                                 sample_weight=sample_weight,
                                                 label_smoothing=label_smoothing)
        self._pending_checks.setdefault(BATCH, set()).add(int(logits.shape[-1]))
        return softmax_xent.softmax_xent(logits, _device_labels(labels), grad,
                                         self._error_word(BATCH), self.workspace, out,
                                         weight=weight, sample_weight=sample_weight,
                                         label_smoothing=label_smoothing)

    # -- gradient clipping over the flat gradient buffer ----------------------------------
    def grad_norm(self, grad, norm_type, out):
        if not (_is_f32(grad, out) and grad.ndim == 1 and out.size == 1):
            return super().grad_norm(grad, norm_type, out)
        clip_grad.grad_norm(grad, norm_type, out, self.workspace)
        return out

    def clip_by_norm(self, grad, max_norm, norm):
        if not (_is_f32(grad, norm) and grad.ndim == 1 and norm.size == 1):
            return super().clip_by_norm(grad, max_norm, norm)
        clip_grad.clip_by_norm(grad, max_norm, norm)

    # -- optimizer updates over the flat parameter buffer --------------------------------
    def _stack_table(self, models, lr, *values):
        """The segment table of a stack's flat buffer (made once per layout), or None when
        the per-model kernels cannot take it (too many models, or values not float64 device
        arrays of n)."""
        fits = (models.models <= optim.MAX_MODELS and lr.size == models.models
                and all(not is_per_model(v) or (isinstance(v, cupy.ndarray)
                                                and v.dtype == np.float64
                                                and v.size == models.models) for v in values))
        if not fits:
            return None
        if models not in self._segment_tables:
            self._segment_tables[models] = optim.segments(models, cupy)
        return self._segment_tables[models]

    def sgd_update(self, param, grad, velocity, lr, *, momentum, weight_decay, nesterov,
                   models=None):
        state = [velocity] if used(momentum) else []
        fused = (_is_f32(param, grad, lr, *state) and _same_size(param.size, grad, *state)
                 and lr.size >= 1)
        table = None if models is None or not fused else \
            self._stack_table(models, lr, momentum, weight_decay)
        if not fused or (models is not None and table is None):
            return super().sgd_update(param, grad, velocity, lr, momentum=momentum,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      models=models)
        if models is not None:
            optim.sgd_update_models(param, grad, velocity if state else None, lr, table,
                                    models.models, momentum=momentum,
                                    weight_decay=weight_decay, nesterov=nesterov)
            return
        optim.sgd_update(param, grad, velocity, lr, momentum=momentum,
                         weight_decay=weight_decay, nesterov=nesterov)

    def adam_update(self, param, grad, exp_avg, exp_avg_sq, lr, step, *, beta1, beta2, eps,
                    weight_decay, decoupled, models=None):
        arrays = (param, grad, exp_avg, exp_avg_sq)
        fused = (_is_f32(*arrays, lr, step) and _same_size(param.size, *arrays)
                 and lr.size >= 1 and step.size >= 1)
        table = None if models is None or not fused else \
            self._stack_table(models, lr, beta1, beta2, eps, weight_decay)
        if not fused or (models is not None and table is None):
            return super().adam_update(param, grad, exp_avg, exp_avg_sq, lr, step,
                                       beta1=beta1, beta2=beta2, eps=eps,
                                       weight_decay=weight_decay, decoupled=decoupled,
                                       models=models)
        if models is not None:
            optim.adam_update_models(param, grad, exp_avg, exp_avg_sq, lr, step, table,
                                     models.models, beta1=beta1, beta2=beta2, eps=eps,
                                     weight_decay=weight_decay, decoupled=decoupled)
            return
        optim.adam_update(param, grad, exp_avg, exp_avg_sq, lr, step, beta1=beta1,
                          beta2=beta2, eps=eps, weight_decay=weight_decay,
                          decoupled=decoupled)

    # -- the static training step ----------------------------------------------------------
    def gather_batch(self, X, y, order, cursor, x_out, y_out):
        fused = (isinstance(X, cupy.ndarray) and X.dtype in step.INPUT_TYPES
                 and y.dtype in step.LABEL_TYPES and order.dtype == np.int64
                 and cursor.dtype == np.int64 and _is_f32(x_out)
                 and all(a.flags.c_contiguous for a in (X, y, order, y_out))
                 and y_out.dtype == y.dtype
                 and X.shape[1:] == x_out.shape[x_out.ndim - X.ndim + 1:]  # (groups,) B, ...
                 and order.ndim == y_out.ndim)
        if not fused:
            return super().gather_batch(X, y, order, cursor, x_out, y_out)
        step.gather_batch(X, y, order, cursor, x_out, y_out)

    def end_step(self, cursor, rows, batch_size, loss, correct, losses, hits):
        fused = (cursor.dtype == np.int64 and loss.dtype == np.float32
                 and correct.dtype == np.int64 and losses.dtype == np.float64
                 and hits.dtype == np.int64
                 and losses.flags.c_contiguous and hits.flags.c_contiguous)
        if not fused:
            return super().end_step(cursor, rows, batch_size, loss, correct, losses, hits)
        step.end_step(cursor, rows, batch_size, loss, correct, losses, hits)
