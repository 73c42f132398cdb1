"""Reference implementation of every primitive, written once against ``self.xp``.

With ``xp = numpy`` this is the CPU path; with ``xp = cupy`` it is the plain (unfused) CuPy
path that the fused kernels in ``cupy_ops.py`` are checked and benchmarked against.

Shapes follow the batch-first convention: ``x`` is (batch, in), ``weight`` is (out, in) as in
the lecture's ``z = W a + b``, so a batch computes ``z = x @ W.T + b``. Outputs are written in
place into caller-owned buffers (``out=`` and friends) so a training step allocates nothing
after warm-up.
"""
from __future__ import annotations

import numpy as np


class NumpyOps:
    """The primitives of one training step; subclasses override what they accelerate."""

    name = "numpy"

    def __init__(self, xp=np):
        self.xp = xp
        self._scratch_buffers = {}

    # -- linear layers -------------------------------------------------------------------
    def linear_forward(self, x, weight, bias, out):
        """``out = x @ weight.T + bias`` (``bias`` may be None)."""
        self.xp.matmul(x, weight.T, out=out)
        if bias is not None:
            out += bias
        return out

    def linear_relu_forward(self, x, weight, bias, out):
        """``out = relu(x @ weight.T + bias)``: GEMM, bias and ReLU."""
        self.linear_forward(x, weight, bias, out)
        self.xp.maximum(out, 0, out=out)
        return out

    def linear_backward(self, grad_out, x, weight, grad_weight, grad_bias, grad_x=None):
        """Chain rule through ``z = x W^T + b``: ``dW = dz^T x``, ``db = sum_batch dz``,
        ``dx = dz W`` (skipped when ``grad_x`` is None, as for the first layer)."""
        xp = self.xp
        xp.matmul(grad_out.T, x, out=grad_weight)
        if grad_bias is not None:
            grad_out.sum(axis=0, out=grad_bias)
        if grad_x is not None:
            xp.matmul(grad_out, weight, out=grad_x)
        return grad_x

    def linear_relu_backward(self, grad_out, out, x, weight, grad_weight, grad_bias,
                             grad_z, grad_x=None):
        """Backward of :meth:`linear_relu_forward` given its saved ``out``.

        The ReLU's local gradient is 1 where ``out > 0`` else 0, so ``grad_z = grad_out * mask``
        (``sign(out)`` is exactly that mask, since ``out >= 0``); then as :meth:`linear_backward`.
        """
        xp = self.xp
        xp.sign(out, out=grad_z)
        grad_z *= grad_out
        return self.linear_backward(grad_z, x, weight, grad_weight, grad_bias, grad_x)

    # -- loss ----------------------------------------------------------------------------
    def check_labels(self, labels, num_classes):
        """Raise ValueError naming the first label outside ``[0, num_classes)``."""
        xp = self.xp
        bad = xp.flatnonzero((labels < 0) | (labels >= num_classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"label {int(labels[i])} at index {i} is out of range: expected labels in "
                f"[0, {num_classes}) for {num_classes} classes"
            )

    def check_errors(self):
        """Raise any error a device kernel flagged since the last check (none here: the
        reference ops raise at once). Called wherever a loss is read back to the host."""

    def softmax_cross_entropy(self, logits, labels, grad):
        """Mean softmax cross-entropy of ``logits`` (B, C) against int ``labels`` (B,).

        Writes ``d loss / d logits = (softmax - onehot) / B`` into ``grad`` and returns
        ``(loss, correct)``: the mean loss and the count of rows whose arg-max is the label,
        both 0-d arrays on the device.
        """
        xp = self.xp
        batch, num_classes = logits.shape
        self.check_labels(labels, num_classes)
        rows = xp.arange(batch)
        row_max = logits.max(axis=1, keepdims=True)
        correct = xp.count_nonzero(logits.argmax(axis=1) == labels)
        xp.subtract(logits, row_max, out=grad)
        true_shifted = grad[rows, labels]
        xp.exp(grad, out=grad)
        row_sum = grad.sum(axis=1, keepdims=True)
        loss = (xp.log(row_sum[:, 0]) - true_shifted).mean()
        grad /= row_sum
        grad[rows, labels] -= 1
        grad *= 1.0 / batch
        return loss.astype(logits.dtype), xp.asarray(correct)

    # -- optimizer updates over the flat parameter buffer --------------------------------
    def _scratch(self, name, like):
        """A workspace array shaped like ``like``, kept for the next call (no per-step
        allocation in the updates)."""
        key = (name, like.shape, like.dtype)
        buf = self._scratch_buffers.get(key)
        if buf is None:
            buf = self._scratch_buffers[key] = self.xp.empty_like(like)
        return buf

    def _decayed(self, param, grad, weight_decay):
        """``grad + weight_decay * param`` (L2 decay) in a reused workspace."""
        g = self._scratch("decayed", param)
        self.xp.multiply(param, weight_decay, out=g)
        g += grad
        return g

    def sgd_update(self, param, grad, velocity, lr, *, momentum, weight_decay, nesterov):
        """One SGD step in place; ``lr`` is a 1-element device array.

        ``g = grad + wd * param``; with momentum ``v = momentum * v + g`` and the step uses
        ``v`` (or ``g + momentum * v`` for Nesterov); ``param -= lr * step``.
        """
        xp = self.xp
        g = self._decayed(param, grad, weight_decay) if weight_decay else grad
        direction = g
        if momentum:
            velocity *= momentum
            velocity += g
            direction = velocity
            if nesterov:
                direction = self._scratch("nesterov", param)
                xp.multiply(velocity, momentum, out=direction)
                direction += g
        update = self._scratch("update", param)
        xp.multiply(direction, lr, out=update)
        param -= update

    def adam_update(self, param, grad, exp_avg, exp_avg_sq, lr, step, *, beta1, beta2, eps,
                    weight_decay, decoupled):
        """One Adam (``decoupled=False``) or AdamW (``decoupled=True``) step in place.

        ``lr`` and ``step`` (already incremented) are 1-element device arrays.
        """
        xp = self.xp
        g = grad
        if weight_decay and decoupled:
            param *= 1 - lr * weight_decay
        elif weight_decay:
            g = self._decayed(param, grad, weight_decay)
        work = self._scratch("update", param)
        exp_avg *= beta1
        xp.multiply(g, 1 - beta1, out=work)
        exp_avg += work
        exp_avg_sq *= beta2
        xp.multiply(g, g, out=work)
        work *= 1 - beta2
        exp_avg_sq += work
        xp.divide(exp_avg_sq, 1 - beta2 ** step, out=work)   # bias-corrected second moment
        xp.sqrt(work, out=work)
        work += eps
        xp.divide(exp_avg, work, out=work)
        work *= lr / (1 - beta1 ** step)
        param -= work
