"""Elementwise and row-wise activations: forward saves the output, backward multiplies the
upstream gradient by the local gradient computed from it."""
from __future__ import annotations

from ..checks import check_fraction
from .module import Module


class _Activation(Module):
    """An elementwise activation that saves its output ``_y`` (or input) for backward."""

    def __init__(self, dtype="float32"):
        super().__init__(dtype)
        self._y = None

    def forward(self, x):
        y = self._buffer("out", x.shape)
        self._activate(x, y)
        self._y = y
        return y

    def backward(self, grad, input_grad=True):
        y = self._saved(self._y)
        if grad.shape != y.shape:
            raise ValueError(f"{type(self).__name__}.backward expects a gradient of shape "
                             f"{tuple(y.shape)}, got {tuple(grad.shape)}")
        grad_x = self._buffer("grad_x", y.shape)
        self._local_grad(y, grad, grad_x)
        return grad_x


class ReLU(_Activation):
    """``max(z, 0)``: local gradient 1 where the output is positive, else 0."""

    def _activate(self, x, y):
        self.backend.xp.maximum(x, 0, out=y)

    def _local_grad(self, y, grad, grad_x):
        self.backend.xp.sign(y, out=grad_x)
        grad_x *= grad


class LeakyReLU(_Activation):
    """``z`` where positive, ``negative_slope * z`` elsewhere (0 <= negative_slope < 1)."""

    def __init__(self, negative_slope=0.01, dtype="float32"):
        super().__init__(dtype)
        self.negative_slope = check_fraction(negative_slope, "negative_slope")

    def config(self):
        return {"type": "LeakyReLU", "negative_slope": self.negative_slope}

    def _activate(self, x, y):
        xp = self.backend.xp
        xp.multiply(x, self.negative_slope, out=y)
        xp.maximum(x, y, out=y)

    def _local_grad(self, y, grad, grad_x):
        xp = self.backend.xp
        grad_x[...] = xp.where(y > 0, grad, grad * self.negative_slope)


def sigmoid(xp, x, out):
    """``out = 1 / (1 + e^-x)``, computed as ``(1 + tanh(x/2)) / 2`` (no overflow)."""
    xp.multiply(x, 0.5, out=out)
    xp.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


class Sigmoid(_Activation):
    """``1 / (1 + e^-z)`` (see :func:`sigmoid`); local gradient ``y (1 - y)``."""

    def _activate(self, x, y):
        sigmoid(self.backend.xp, x, y)

    def _local_grad(self, y, grad, grad_x):
        self.backend.xp.subtract(1, y, out=grad_x)
        grad_x *= y
        grad_x *= grad


class Tanh(_Activation):
    """``tanh(z)``; local gradient ``1 - y^2``."""

    def _activate(self, x, y):
        self.backend.xp.tanh(x, out=y)

    def _local_grad(self, y, grad, grad_x):
        xp = self.backend.xp
        xp.multiply(y, y, out=grad_x)
        xp.subtract(1, grad_x, out=grad_x)
        grad_x *= grad


def _check_2d(layer, x):
    if x.ndim != 2:
        raise ValueError(f"{layer} expects 2-D input (batch, classes), got shape "
                         f"{tuple(x.shape)}")


class Softmax(_Activation):
    """Row-wise softmax of (batch, classes); backward ``y * (g - sum(g * y))``."""

    def _activate(self, x, y):
        _check_2d("Softmax", x)
        self.backend.ops.softmax(x, y)

    def _local_grad(self, y, grad, grad_x):
        xp = self.backend.xp
        xp.multiply(grad, y, out=grad_x)
        dot = grad_x.sum(axis=1, keepdims=True)
        xp.subtract(grad, dot, out=grad_x)
        grad_x *= y


class LogSoftmax(_Activation):
    """Row-wise log-softmax of (batch, classes); backward ``g - softmax * sum(g)``."""

    def _activate(self, x, y):
        _check_2d("LogSoftmax", x)
        self.backend.ops.softmax(x, y, log=True)

    def _local_grad(self, y, grad, grad_x):
        xp = self.backend.xp
        xp.exp(y, out=grad_x)
        grad_x *= grad.sum(axis=1, keepdims=True)
        xp.subtract(grad, grad_x, out=grad_x)
