"""Layers of the computation graph and ``Sequential``, which runs them in code order.

Each layer defines ``forward`` (caching what it needs) and ``backward`` (upstream gradient
times local gradient); the activations live in ``activations.py``. ``Sequential`` runs a
``Linear`` directly followed by a ``ReLU`` as one fused op (GEMM + bias + ReLU forward, masked
backward), the pair the GPU kernels accelerate.
"""
from __future__ import annotations

import numpy as np

from . import init as _init
from .activations import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from ..checks import check_dtype, check_fraction, check_positive_int
from .module import Module
from .parameter import Parameter


class Linear(Module):
    """``z = x W^T + b`` for a batch ``x`` of shape (batch, in_features).

    ``weight`` has shape (out_features, in_features) as in the lecture's ``z = W a + b``;
    ``init`` is ``"kaiming"`` (He, the default, for ReLU) or ``"xavier"`` (sigmoid/tanh).
    """

    def __init__(self, in_features, out_features, bias=True, *, init="kaiming",
                 dtype=np.float32):
        super().__init__(dtype)
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        if init not in _init.SCHEMES:
            raise ValueError(f"init must be one of {sorted(_init.SCHEMES)}, got {init!r}")
        self.init = init
        shape = (self.out_features, self.in_features)
        weight = _init.SCHEMES[init](shape, self.backend.host_rng)
        self.weight = Parameter(self.backend.asarray(weight, dtype=self.dtype))
        self.bias = (Parameter(self.backend.xp.zeros(self.out_features, dtype=self.dtype))
                     if bias else None)
        self._x = None

    def own_parameters(self):
        yield "weight", self.weight
        if self.bias is not None:
            yield "bias", self.bias

    def config(self):
        return {"type": "Linear", "in_features": self.in_features,
                "out_features": self.out_features, "bias": self.bias is not None,
                "init": self.init}

    def check_input(self, x):
        """Raise ValueError unless ``x`` is (batch, in_features)."""
        if x.ndim != 2:
            raise ValueError(
                f"Linear expects 2-D input (batch, {self.in_features}), got shape "
                f"{tuple(x.shape)}; put gpunet.Flatten() first for images"
            )
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"Linear expects input with last dimension in_features={self.in_features}, "
                f"got shape {tuple(x.shape)}"
            )

    def check_grad(self, grad, batch):
        """Raise ValueError unless ``grad`` matches this layer's last output."""
        if tuple(grad.shape) != (batch, self.out_features):
            raise ValueError(
                f"Linear.backward expects a gradient of shape ({batch}, {self.out_features}), "
                f"got {tuple(grad.shape)}"
            )

    def _bias_arrays(self):
        if self.bias is None:
            return None, None
        return self.bias.data, self.bias.grad

    def forward(self, x):
        self.check_input(x)
        out = self._buffer("out", (x.shape[0], self.out_features))
        self.backend.ops.linear_forward(x, self.weight.data, self._bias_arrays()[0], out)
        self._x = x
        return out

    def backward(self, grad, input_grad=True):
        x = self._saved(self._x)
        self.check_grad(grad, x.shape[0])
        grad_x = self._buffer("grad_x", x.shape) if input_grad else None
        self.backend.ops.linear_backward(grad, x, self.weight.data, self.weight.grad,
                                         self._bias_arrays()[1], grad_x)
        return grad_x


class Flatten(Module):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...), e.g. 28x28 images to 784 features."""

    def __init__(self, dtype=np.float32):
        super().__init__(dtype)
        self._shape = None

    def forward(self, x):
        if x.ndim < 1:
            raise ValueError("Flatten expects at least a batch dimension, got a 0-d array")
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad, input_grad=True):
        return grad.reshape(self._saved(self._shape))


class Dropout(Module):
    """In training, zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)``; in evaluation mode, the identity."""

    def __init__(self, p=0.5, dtype=np.float32):
        super().__init__(dtype)
        self.p = check_fraction(p, "dropout probability p")
        self._mask = None
        self._ran = False

    def config(self):
        return {"type": "Dropout", "p": self.p}

    def forward(self, x):
        self._ran = True
        if not self.training or self.p == 0:
            self._mask = None
            return x
        mask = self._buffer("mask", x.shape)
        mask[...] = self.backend.uniform(x.shape, self.dtype) >= self.p
        mask *= 1.0 / (1.0 - self.p)
        self._mask = mask
        out = self._buffer("out", x.shape)
        self.backend.xp.multiply(x, mask, out=out)
        return out

    def backward(self, grad, input_grad=True):
        self._saved(self._ran or None)
        if self._mask is None:
            return grad
        grad_x = self._buffer("grad_x", grad.shape)
        self.backend.xp.multiply(grad, self._mask, out=grad_x)
        return grad_x


class _LinearReLU:
    """A ``Linear`` directly followed by a ``ReLU``, run as one fused op by ``Sequential``."""

    def __init__(self, linear, relu):
        self.linear = linear
        self.relu = relu

    def forward(self, x):
        lin = self.linear
        lin.check_input(x)
        out = lin._buffer("out", (x.shape[0], lin.out_features))
        lin.backend.ops.linear_relu_forward(x, lin.weight.data, lin._bias_arrays()[0], out)
        lin._x, self.relu._y = x, out
        return out

    def backward(self, grad, input_grad=True):
        lin = self.linear
        x = lin._saved(lin._x)
        out = self.relu._saved(self.relu._y)
        lin.check_grad(grad, x.shape[0])
        grad_z = lin._buffer("grad_z", out.shape)
        grad_x = lin._buffer("grad_x", x.shape) if input_grad else None
        lin.backend.ops.linear_relu_backward(grad, out, x, lin.weight.data, lin.weight.grad,
                                             lin._bias_arrays()[1], grad_z, grad_x)
        return grad_x


class Sequential(Module):
    """Layers run in code order, like ``nn.Sequential``; ``backward`` runs them in reverse.

    ``dtype`` casts every layer (default: the layers' own dtype, which must agree). The
    parameters of all layers are packed into one flat buffer.
    """

    def __init__(self, *layers, dtype=None):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential expects Module layers; layer {i} is "
                                f"{type(layer).__name__}")
        dtypes = {m.dtype for m in layers}
        if dtype is None and len(dtypes) > 1:
            raise TypeError(f"layers have different dtypes {sorted(map(str, dtypes))}; "
                            f"pass dtype= to Sequential")
        dtype = check_dtype(dtype if dtype is not None else (dtypes.pop() if dtypes
                                                             else np.float32))
        super().__init__(dtype)
        self.layers = list(layers)
        self._plan = self._fuse(self.layers)
        self._first_param_step = next(
            (i for i, step in enumerate(self._plan) if _step_has_parameters(step)), None)
        backends = {m.backend for m in self.layers}
        self.to(backends.pop() if len(backends) == 1 else "cpu", dtype)

    @staticmethod
    def _fuse(layers):
        plan, i = [], 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if type(layer) is Linear and type(nxt) is ReLU:
                plan.append(_LinearReLU(layer, nxt))
                i += 2
            else:
                plan.append(layer)
                i += 1
        return plan

    def children(self):
        return self.layers

    def config(self):
        return {"type": "Sequential", "layers": [m.config() for m in self.layers]}

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {m!r}" for i, m in enumerate(self.layers))
        return f"Sequential({inner}\n)"

    def forward(self, x):
        for step in self._plan:
            x = step.forward(x)
        return x

    def backward(self, grad, input_grad=True):
        """Backpropagate ``grad`` = dJ/d(output); returns dJ/d(input), or None when
        ``input_grad=False`` (which skips the first layer's input-gradient GEMM)."""
        for i in range(len(self._plan) - 1, -1, -1):
            if not input_grad and i == self._first_param_step:
                return self._plan[i].backward(grad, input_grad=False)
            grad = self._plan[i].backward(grad, input_grad=True)
        return grad


def _step_has_parameters(step):
    module = step.linear if isinstance(step, _LinearReLU) else step
    return any(True for _ in module.parameters())


LAYERS = {cls.__name__: cls for cls in (Linear, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax,
                                         LogSoftmax, Flatten, Dropout, Sequential)}


def from_config(config: dict) -> Module:
    """Rebuild a module (freshly initialised) from :meth:`Module.config` output."""
    if not isinstance(config, dict) or config.get("type") not in LAYERS:
        raise ValueError(f"unknown layer description {config!r}; expected a dict whose "
                         f"'type' is one of {sorted(LAYERS)}")
    kwargs = {k: v for k, v in config.items() if k != "type"}
    if config["type"] == "Sequential":
        if not isinstance(kwargs.get("layers"), list):
            raise ValueError(f"a Sequential description needs a 'layers' list, got {config!r}")
        return Sequential(*(from_config(c) for c in kwargs["layers"]))
    try:
        return LAYERS[config["type"]](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments in layer description {config!r}: {exc}") from exc
