"""``StackedLinear``: the Linear layers of the n models of a stack (``stack.py``) side by side,
weight (n, out, in) and bias (n, out), and the layouts they compute in.

Activations inside a stack carry two model axes, (g, k, B, features): g groups of k models,
the models of a group reading one input batch (g = 1: one batch shared by all; g = n: one
batch per model). The stack's *first* Linear reads a group's input, (g, B, in), so it is one
wide GEMM per group, ``x @ [W_1 | ... | W_k]^T`` with the group's weights as one (k * out, in)
matrix (a plain 2-D GEMM when g = 1), its bias and ReLU fused as for one model; its weight
gradient is one GEMM too, ``dZ^T x``. Its output stays in that GEMM's layout, (g, B, k, out),
handed on as the strided view (g, k, B, out). The later Linears are batched GEMMs over all
models (``ops.linear_forward`` with leading model axes); they write the gradient of their input
in the layout of that input, so the first Linear's weight gradient runs without a copy.
"""
from __future__ import annotations

import math

import numpy as np

from . import init as _init
from ..checks import check_positive_int
from .module import Module
from .parameter import Parameter
from .registry import _register


class ModelParameter(Parameter):
    """A parameter of a stack: its leading axis is the model (the optimizer reads per-model
    hyperparameters along it, ``ops/models.py``)."""

    __slots__ = ()

    @property
    def models(self) -> int:
        return int(self.data.shape[0])


class StackedLinear(Module):
    """``models`` Linear(in_features, out_features) layers side by side; ``first``: the
    stack's first Linear, whose input is shared by the models of a group (see the module
    text). Weights are drawn per model by :meth:`draw`."""

    _transient = ("_x", "_out")

    def __init__(self, models, in_features, out_features, bias=True, *, init="kaiming",
                 first=False, dtype=np.float32):
        super().__init__(dtype)
        self.models = check_positive_int(models, "models")
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        if init not in _init.SCHEMES:
            raise ValueError(f"init must be one of {sorted(_init.SCHEMES)}, got {init!r}")
        self.init, self.first = init, bool(first)
        xp = self.backend.xp
        self.weight = ModelParameter(xp.zeros((self.models, self.out_features,
                                               self.in_features), dtype=self.dtype))
        self.bias = (ModelParameter(xp.zeros((self.models, self.out_features), dtype=self.dtype))
                     if bias else None)
        self._x = self._out = None

    def config(self):
        return {**super().config(), "models": self.models, "in_features": self.in_features,
                "out_features": self.out_features, "bias": self.bias is not None,
                "init": self.init, "first": self.first}

    def draw(self, model, rng):
        """Draw model ``model``'s weight with this layer's scheme from the NumPy generator
        ``rng``, as ``Linear`` draws its own."""
        values = _init.SCHEMES[self.init]((self.out_features, self.in_features), rng)
        self.weight.data[model] = self.backend.asarray(values, dtype=self.dtype)

    def _grouped_parameters(self, groups):
        """Weight, bias and their gradients shaped for ``groups`` groups: (g, k * out, in)
        for the first Linear, else (g, k, out, in)."""
        k, out, n_in = self.models // groups, self.out_features, self.in_features
        lead = (groups, k * out) if self.first else (groups, k, out)
        weight = self.weight.data.reshape(*lead, n_in)
        grad_weight = self.weight.grad.reshape(*lead, n_in)
        if self.bias is None:
            return weight, None, grad_weight, None
        return weight, self.bias.data.reshape(lead), grad_weight, self.bias.grad.reshape(lead)

    def forward(self, x, relu=False):
        """``x`` (g, B, in) for the first Linear, else (g, k, B, in); returns (g, k, B, out)
        (``relu``: with the ReLU fused)."""
        groups, batch = x.shape[0], x.shape[-2]
        weight, bias, _, _ = self._grouped_parameters(groups)
        k = self.models // groups
        shape = (groups, batch, k * self.out_features) if self.first \
            else (groups, k, batch, self.out_features)
        out = self._buffer("out", shape)
        ops = self.backend.ops
        run = ops.linear_relu_forward if relu else ops.linear_forward
        run(*_squeezed(x, weight, bias, out))
        self._x, self._out = x, out
        if self.first:
            return out.reshape(groups, batch, k, self.out_features).transpose(0, 2, 1, 3)
        return out

    def backward(self, grad, input_grad=True, relu=False):
        """``grad`` (g, k, B, out), any layout; fills the gradients, returns dJ/dx in the
        layout of ``x`` (or None without ``input_grad``)."""
        x, out = self._saved(self._x), self._out
        groups = x.shape[0]
        if tuple(grad.shape) != (groups, self.models // groups, x.shape[-2], self.out_features):
            raise ValueError(f"StackedLinear.backward expects a gradient of shape "
                             f"{(groups, self.models // groups, x.shape[-2], self.out_features)}"
                             f", got {tuple(grad.shape)}")
        weight, _, grad_weight, grad_bias = self._grouped_parameters(groups)
        if self.first:  # the gradient in the wide GEMM's layout (g, B, k * out)
            grad = _in_layout(self, "grad_wide", grad.transpose(0, 2, 1, 3)).reshape(out.shape)
        grad_x = _like_layout(self, "grad_x", x) if input_grad else None
        ops = self.backend.ops
        if relu:
            grad_z = self._buffer("grad_z", out.shape)
            ops.linear_relu_backward(*_squeezed(grad, out, x, weight, grad_weight, grad_bias,
                                                grad_z, grad_x))
        else:
            ops.linear_backward(*_squeezed(grad, x, weight, grad_weight, grad_bias, grad_x))
        return grad_x


def _squeezed(*arrays):
    """The arrays with their model axes (g, k) merged into one where every array allows it
    as a view (a batched GEMM over one axis; the GPU's fused path), and without it when it
    holds one group of one product (a shared input's wide GEMM, or a stack of one: the
    single-model path). The first array has every model axis; None entries stay None."""
    lead = arrays[0].shape[:-2]
    if len(lead) == 2 and all(a is None or 1 in a.shape[:2]
                              or a.strides[0] == a.shape[1] * a.strides[1] for a in arrays):
        arrays = tuple(None if a is None else a.reshape((-1,) + a.shape[2:]) for a in arrays)
        lead = (math.prod(lead),)
    if math.prod(lead) != 1:
        return arrays
    return tuple(None if a is None else a.reshape(a.shape[len(lead):]) for a in arrays)


def _in_layout(module, name, a):
    """``a`` itself when C-contiguous, else a copy in a reused buffer."""
    if a.flags.c_contiguous:
        return a
    buffer = module._buffer(name, a.shape)
    buffer[...] = a
    return buffer


def _like_layout(module, name, x):
    """A reused buffer of ``x``'s shape laid out as ``x`` is: the transposed view of a
    (g, B, k, features) buffer when ``x`` is one (the first Linear's output), else C-order."""
    if x.ndim == 4 and x.transpose(0, 2, 1, 3).flags.c_contiguous:
        g, k, batch, features = x.shape
        return module._buffer(name, (g, batch, k, features)).transpose(0, 2, 1, 3)
    return module._buffer(name, x.shape)


_register(StackedLinear, builtin=True)
