"""Elementwise and row-wise activations, each an :class:`Activation`: forward keeps its input
and output, backward multiplies the upstream gradient by the local gradient computed from
them (ReLU needs only the output; Swish or GELU would need the input)."""
from __future__ import annotations

from ..checks import check_fraction
from .module import Module
from .registry import _register


class Activation(Module):
    """A parameter-free layer ``y = f(x)``: subclasses define :meth:`activate` and
    :meth:`local_grad`; ``forward`` keeps ``x`` and ``y`` for ``backward``."""

    _transient = ("_x", "_y")

    def __init__(self, dtype="float32"):
        super().__init__(dtype)
        self._x = self._y = None

    def activate(self, x, out):
        """Write ``f(x)`` into ``out`` (same shape and dtype as ``x``)."""
        raise NotImplementedError(f"{type(self).__name__} must define activate(self, x, out) "
                                  f"writing f(x) into out")

    def local_grad(self, x, y, grad, out):
        """Write ``grad * f'(x)`` into ``out``, given the input ``x``, the output ``y`` and
        the upstream gradient ``grad`` (``x`` is None after a fused Linear+ReLU step)."""
        raise NotImplementedError(f"{type(self).__name__} must define local_grad(self, x, y, "
                                  f"grad, out) writing grad * f'(x) into out")

    def forward(self, x):
        y = self._buffer("out", x.shape)
        self.activate(x, y)
        self._x, self._y = x, y
        return y

    def backward(self, grad, input_grad=True):
        y = self._saved(self._y)
        if grad.shape != y.shape:
            raise ValueError(f"{type(self).__name__}.backward expects a gradient of shape "
                             f"{tuple(y.shape)}, got {tuple(grad.shape)}")
        if not input_grad:
            return None
        grad_x = self._buffer("grad_x", y.shape)
        self.local_grad(self._x, y, grad, grad_x)
        return grad_x


class ReLU(Activation):
    """``max(z, 0)``: local gradient 1 where the output is positive, else 0."""

    def activate(self, x, out):
        self.backend.xp.maximum(x, 0, out=out)

    def local_grad(self, x, y, grad, out):
        self.backend.xp.sign(y, out=out)
        out *= grad


class LeakyReLU(Activation):
    """``z`` where positive, ``negative_slope * z`` elsewhere (0 <= negative_slope < 1)."""

    def __init__(self, negative_slope=0.01, dtype="float32"):
        super().__init__(dtype)
        self.negative_slope = check_fraction(negative_slope, "negative_slope")

    def config(self):
        return {**super().config(), "negative_slope": self.negative_slope}

    def activate(self, x, out):
        xp = self.backend.xp
        xp.multiply(x, self.negative_slope, out=out)
        xp.maximum(x, out, out=out)

    def local_grad(self, x, y, grad, out):
        out[...] = self.backend.xp.where(y > 0, grad, grad * self.negative_slope)


def sigmoid(xp, x, out):
    """``out = 1 / (1 + e^-x)``, computed as ``(1 + tanh(x/2)) / 2`` (no overflow)."""
    xp.multiply(x, 0.5, out=out)
    xp.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


class Sigmoid(Activation):
    """``1 / (1 + e^-z)`` (see :func:`sigmoid`); local gradient ``y (1 - y)``."""

    def activate(self, x, out):
        sigmoid(self.backend.xp, x, out)

    def local_grad(self, x, y, grad, out):
        self.backend.xp.subtract(1, y, out=out)
        out *= y
        out *= grad


class Tanh(Activation):
    """``tanh(z)``; local gradient ``1 - y^2``."""

    def activate(self, x, out):
        self.backend.xp.tanh(x, out=out)

    def local_grad(self, x, y, grad, out):
        xp = self.backend.xp
        xp.multiply(y, y, out=out)
        xp.subtract(1, out, out=out)
        out *= grad


def _check_2d(layer, x):
    if x.ndim != 2:
        raise ValueError(f"{layer} expects 2-D input (batch, classes), got shape "
                         f"{tuple(x.shape)}")


class Softmax(Activation):
    """Row-wise softmax of (batch, classes); backward ``y * (g - sum(g * y))``."""

    def activate(self, x, out):
        _check_2d("Softmax", x)
        self.backend.ops.softmax(x, out)

    def local_grad(self, x, y, grad, out):
        xp = self.backend.xp
        xp.multiply(grad, y, out=out)
        dot = out.sum(axis=1, keepdims=True)
        xp.subtract(grad, dot, out=out)
        out *= y


class LogSoftmax(Activation):
    """Row-wise log-softmax of (batch, classes); backward ``g - softmax * sum(g)``."""

    def activate(self, x, out):
        _check_2d("LogSoftmax", x)
        self.backend.ops.softmax(x, out, log=True)

    def local_grad(self, x, y, grad, out):
        xp = self.backend.xp
        xp.exp(y, out=out)
        out *= grad.sum(axis=1, keepdims=True)
        xp.subtract(grad, out, out=out)


for _cls in (ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, LogSoftmax):
    _register(_cls, builtin=True)
