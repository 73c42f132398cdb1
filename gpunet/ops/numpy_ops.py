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

from .loss_ops import LossOps
from .updates import UpdateOps
from .workspace import Workspace


class NumpyOps(LossOps, UpdateOps):
    """The primitives of one training step; subclasses override what they accelerate.
    The softmax and cross-entropy are :class:`LossOps`'s (``loss_ops.py``), the optimizer
    updates :class:`UpdateOps`'s (``updates.py``)."""

    name = "numpy"

    def __init__(self, xp=np):
        self.xp = xp
        self.workspace = Workspace(xp)

    # -- linear layers -------------------------------------------------------------------
    def linear_forward(self, x, weight, bias, out):
        """``out = x @ weight.T + bias`` (``bias`` may be None). Leading axes before the
        last two are models (``nn/stack.py``): ``x`` (..., B, in), ``weight`` (..., out, in),
        ``bias`` (..., out), one product per model."""
        self.xp.matmul(x, weight.swapaxes(-1, -2), out=out)
        if bias is not None:
            out += bias[..., None, :] if bias.ndim > 1 else bias
        return out

    def linear_relu_forward(self, x, weight, bias, out):
        """``out = relu(x @ weight.T + bias)``: GEMM, bias and ReLU (the max against a row
        of zeros: NumPy vectorises that, not the max against a scalar 0, 3x slower)."""
        self.linear_forward(x, weight, bias, out)
        zeros = self.workspace.zeros("relu_zeros", out.shape[-1:], out.dtype)
        self.xp.maximum(out, zeros, out=out)
        return out

    def linear_backward(self, grad_out, x, weight, grad_weight, grad_bias, grad_x=None):
        """Chain rule through ``z = x W^T + b``: ``dW = dz^T x``, ``db = sum_batch dz``,
        ``dx = dz W`` (skipped when ``grad_x`` is None, as for the first layer)."""
        xp = self.xp
        xp.matmul(grad_out.swapaxes(-1, -2), x, out=grad_weight)
        if grad_bias is not None:
            grad_out.sum(axis=-2, out=grad_bias)
        if grad_x is not None:
            xp.matmul(grad_out, weight, out=grad_x)
        return grad_x

    def linear_relu_backward(self, grad_out, out, x, weight, grad_weight, grad_bias,
                             grad_z, grad_x=None):
        """Backward of :meth:`linear_relu_forward` given its saved ``out``.

        The ReLU's local gradient is 1 where ``out > 0`` else 0, so ``grad_z = grad_out * mask``;
        then as :meth:`linear_backward`.
        """
        xp = self.xp
        xp.greater(out, out.dtype.type(0), out=grad_z)  # the mask, as 0.0 and 1.0
        grad_z *= grad_out
        return self.linear_backward(grad_z, x, weight, grad_weight, grad_bias, grad_x)

    # -- the static training step ----------------------------------------------------------
    def gather_batch(self, X, y, order, cursor, x_out, y_out):
        """Rows ``order[c:c + B]`` of the dataset into static buffers, ``c = cursor[0]``:
        ``x_out`` as floats (uint8 images divided by 255), ``y_out`` the labels. An order
        (g, N) holds one row order per group of models (``nn/stack.py``): ``x_out`` is then
        (g, B, ...) and ``y_out`` (g, B)."""
        xp, batch = self.xp, y_out.shape[-1]
        start = int(cursor[0])
        rows = order[..., start:start + batch]
        self._take_rows(y, rows, y_out)
        if X.dtype == x_out.dtype:
            self._take_rows(X, rows, x_out)
            return
        staged = self.workspace.get("gather_stage", x_out.shape, X.dtype)
        self._take_rows(X, rows, staged)
        xp.copyto(x_out, staged, casting="same_kind")  # a cast, without a ufunc's buffers
        if X.dtype == np.uint8:
            x_out /= 255                                 # the bits of uint8 / 255 in float

    def _take_rows(self, a, rows, out):
        """``out = a[rows]`` along the first axis. NumPy buffers ``take(out=...)`` in its
        default mode; ``clip`` (the rows are valid) writes straight into ``out``."""
        if self.xp is np:
            np.take(a, rows, axis=0, out=out, mode="clip")
        else:
            self.xp.take(a, rows, axis=0, out=out)

    def end_step(self, cursor, rows, batch_size, loss, correct, losses, hits):
        """Record a step's ``loss`` and ``correct`` at ``losses[s]``, ``hits[s]`` with
        ``s = cursor[0] // batch_size``, then advance ``cursor`` by ``rows``."""
        step = int(cursor[0]) // batch_size
        losses[step] = loss
        hits[step] = correct
        cursor += rows

    # -- gradient clipping over the flat gradient buffer ----------------------------------
    def grad_norm(self, grad, norm_type, out):
        """``out[...]`` = the ``norm_type``-norm of the 1-D ``grad`` (p > 0, or ``inf``: the
        largest magnitude, NaN if any value is NaN), summed pairwise in ``grad``'s dtype in
        a reused workspace. ``out`` is a 0-d array of that dtype."""
        xp = self.xp
        work = self.workspace.like("norm_terms", grad)
        if work.size == 0:
            out[...] = 0
        elif norm_type == 2:
            xp.multiply(grad, grad, out=work)
            xp.sqrt(work.sum(out=out), out=out)
        else:
            xp.abs(grad, out=work)
            if np.isinf(norm_type):
                work.max(out=out)
            elif norm_type == 1:
                work.sum(out=out)
            else:
                xp.power(work, norm_type, out=work)
                xp.power(work.sum(out=out), 1.0 / norm_type, out=out)
        return out

    def clip_by_norm(self, grad, max_norm, norm):
        """``grad *= min(max_norm / (norm + 1e-6), 1)`` in ``grad``'s dtype (as torch's
        ``clip_grad_norm_``; a NaN norm makes every value NaN), ``norm`` read on the device."""
        xp = self.xp
        coef = self.workspace.get("clip_coef", (), grad.dtype)
        xp.add(norm, grad.dtype.type(1e-6), out=coef)
        xp.divide(grad.dtype.type(max_norm), coef, out=coef)
        xp.minimum(coef, 1, out=coef)
        grad *= coef
