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
from .models import used
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
        """``out = act(op(a) @ op(b) + bias)`` through the routed GEMM."""
        m, n = out.shape
        k = a.shape[0] if trans_a else a.shape[1]
        if gemm.can_launch(m, n) and self.gemm_route(m, n, k) == "tiled":
            return gemm.gemm(a, b, out, trans_a, trans_b, self.workspace, bias, relu)
        cupy.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)
        if bias is not None or relu:
            linear_relu.bias_act(out, bias, relu)
        return out

    # -- linear layers -------------------------------------------------------------------
    @staticmethod
    def _forward_ok(x, weight, bias, out):
        return (_is_f32(x, weight, bias, out) and x.ndim == 2 and weight.ndim == 2
                and x.shape[1] == weight.shape[1]
                and out.shape == (x.shape[0], weight.shape[0])
                and (bias is None or bias.shape == (weight.shape[0],)))

    def linear_forward(self, x, weight, bias, out):
        if not self._forward_ok(x, weight, bias, out):
            return super().linear_forward(x, weight, bias, out)
        return self._gemm(x, weight, out, False, True, bias=bias)

    def linear_relu_forward(self, x, weight, bias, out):
        if not self._forward_ok(x, weight, bias, out):
            return super().linear_relu_forward(x, weight, bias, out)
        return self._gemm(x, weight, out, False, True, bias=bias, relu=True)

    def _backward_ok(self, grad_out, x, weight, grad_weight, grad_bias, grad_x, *saved):
        batch, n_out = grad_out.shape if grad_out.ndim == 2 else (-1, -1)
        return (_is_f32(grad_out, grad_weight, grad_x, *saved)
                and self._forward_ok(x, weight, grad_bias, grad_out)
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
        fused = (_is_f32(logits, grad, weight, sample_weight) and logits.ndim == 2
                 and grad.shape == logits.shape
                 and isinstance(labels, cupy.ndarray) and labels.dtype.kind in "iu"
                 and labels.shape == logits.shape[:1] and logits.shape[0] > 0
                 and (weight is None or weight.shape == logits.shape[1:])
                 and (sample_weight is None or sample_weight.shape == logits.shape[:1])
                 and (out is None or (out[0].dtype == np.float32 and out[1].dtype == np.int64)))
        if not fused:
            return super().softmax_cross_entropy(logits, labels, grad, out, weight=weight,
                                                 sample_weight=sample_weight,
                                                 label_smoothing=label_smoothing)
        self._pending_checks.setdefault(BATCH, set()).add(int(logits.shape[1]))
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
    def sgd_update(self, param, grad, velocity, lr, *, momentum, weight_decay, nesterov,
                   models=None):
        state = [velocity] if used(momentum) else []
        if models is not None or not (_is_f32(param, grad, lr, *state)
                                      and _same_size(param.size, grad, *state)
                                      and lr.size >= 1):
            return super().sgd_update(param, grad, velocity, lr, momentum=momentum,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      models=models)
        optim.sgd_update(param, grad, velocity, lr, momentum=momentum,
                         weight_decay=weight_decay, nesterov=nesterov)

    def adam_update(self, param, grad, exp_avg, exp_avg_sq, lr, step, *, beta1, beta2, eps,
                    weight_decay, decoupled, models=None):
        arrays = (param, grad, exp_avg, exp_avg_sq)
        if models is not None or not (_is_f32(*arrays, lr, step)
                                      and _same_size(param.size, *arrays)
                                      and lr.size >= 1 and step.size >= 1):
            return super().adam_update(param, grad, exp_avg, exp_avg_sq, lr, step,
                                       beta1=beta1, beta2=beta2, eps=eps,
                                       weight_decay=weight_decay, decoupled=decoupled,
                                       models=models)
        optim.adam_update(param, grad, exp_avg, exp_avg_sq, lr, step, beta1=beta1,
                          beta2=beta2, eps=eps, weight_decay=weight_decay,
                          decoupled=decoupled)

    # -- the static training step ----------------------------------------------------------
    def gather_batch(self, X, y, order, cursor, x_out, y_out):
        fused = (isinstance(X, cupy.ndarray) and X.dtype in step.INPUT_TYPES
                 and y.dtype in step.LABEL_TYPES and order.dtype == np.int64
                 and cursor.dtype == np.int64 and _is_f32(x_out)
                 and all(a.flags.c_contiguous for a in (X, y, order, y_out))
                 and y_out.dtype == y.dtype and X.shape[1:] == x_out.shape[1:])
        if not fused:
            return super().gather_batch(X, y, order, cursor, x_out, y_out)
        step.gather_batch(X, y, order, cursor, x_out, y_out)

    def end_step(self, cursor, rows, batch_size, loss, correct, losses, hits):
        fused = (cursor.dtype == np.int64 and loss.dtype == np.float32
                 and correct.dtype == np.int64 and losses.dtype == np.float64
                 and hits.dtype == np.int64)
        if not fused:
            return super().end_step(cursor, rows, batch_size, loss, correct, losses, hits)
        step.end_step(cursor, rows, batch_size, loss, correct, losses, hits)
