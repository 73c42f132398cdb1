"""Layers of the computation graph and ``Sequential``, which runs them in code order.

Each layer defines ``forward`` (caching what it needs) and ``backward`` (upstream gradient
times local gradient); the activations live in ``activations.py``. ``Sequential`` runs a
``Linear`` directly followed by a ``ReLU`` as one fused op (GEMM + bias + ReLU forward, masked
backward), the pair the GPU kernels accelerate.
"""
from __future__ import annotations

import numpy as np

from . import init as _init
from .activations import ReLU, Sigmoid, Tanh
from ..checks import check_dtype, check_fraction, check_positive_int
from .module import Module
from .parameter import Parameter
from .registry import LAYERS, _register, from_config  # noqa: F401 (LAYERS: re-exported)

#: Activations after which a Linear left to choose its initialisation uses Xavier's.
XAVIER_BEFORE = (Sigmoid, Tanh)


class Linear(Module):
    """``z = x W^T + b`` for a batch ``x`` of shape (batch, in_features).

    ``weight`` has shape (out_features, in_features) as in the lecture's ``z = W a + b``.
    ``init``: ``"kaiming"`` (He, for ReLU) or ``"xavier"`` (Glorot, for sigmoid/tanh); left
    unset, it is ``"kaiming"``, except that ``Sequential`` redraws a Linear directly followed
    by a ``Tanh`` or ``Sigmoid`` with ``"xavier"``.
    """

    _transient = ("_x",)

    def __init__(self, in_features, out_features, bias=True, *, init=None,
                 dtype=np.float32):
        super().__init__(dtype)
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        if init is not None and init not in _init.SCHEMES:
            raise ValueError(f"init must be one of {sorted(_init.SCHEMES)}, got {init!r}")
        self._init_chosen = init is not None
        self.weight = Parameter(self.backend.xp.empty((self.out_features, self.in_features),
                                                      dtype=self.dtype))
        self.bias = (Parameter(self.backend.xp.zeros(self.out_features, dtype=self.dtype))
                     if bias else None)
        self.reset_weight(init or "kaiming")
        self._x = None

    def reset_weight(self, init, rng=None):
        """Redraw the weight with the scheme ``init`` (``"kaiming"`` or ``"xavier"``) from the
        NumPy generator ``rng`` (default: the backend's, seeded by ``gn.manual_seed``)."""
        self.init = init
        values = _init.SCHEMES[init](self.weight.shape, rng or self.backend.host_rng)
        self.weight.data[...] = self.backend.asarray(values, dtype=self.dtype)

    def config(self):
        return {**super().config(), "in_features": self.in_features,
                "out_features": self.out_features, "bias": self.bias is not None,
                "init": self.init}

    def check_input(self, x):
        """Raise ValueError unless ``x`` is (batch, in_features)."""
        if x.ndim == 2 and x.shape[1] == self.in_features:
            return
        one_sample = x.size == self.in_features and (x.ndim != 2 or x.shape[0] != 1)
        hint = ("; one sample needs a batch axis: model(x[None])" if one_sample else
                "; put gpunet.Flatten() first for images" if x.ndim > 2 else "")
        if x.ndim != 2:
            raise ValueError(f"Linear expects 2-D input (batch, {self.in_features}), got shape "
                             f"{tuple(x.shape)}{hint}")
        raise ValueError(f"Linear expects input with last dimension in_features="
                         f"{self.in_features}, got shape {tuple(x.shape)}{hint}")

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
        shape = self._saved(self._shape)
        return grad.reshape(shape) if input_grad else None


class Dropout(Module):
    """In training, zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)``; in evaluation mode, the identity."""

    _transient = ("_mask",)

    def __init__(self, p=0.5, dtype=np.float32):
        super().__init__(dtype)
        self.p = check_fraction(p, "dropout probability p")
        self._mask = None
        self._ran = False

    def config(self):
        return {**super().config(), "p": self.p}

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
        if not input_grad:
            return None
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
    parameters of all layers are packed into one flat buffer. A ``Linear`` left to choose
    its initialisation and directly followed by a ``Tanh`` or ``Sigmoid`` is redrawn with
    Xavier's (He's suits ReLU; Xavier's keeps tanh and sigmoid out of saturation).
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
        for layer, after in zip(self.layers, self.layers[1:]):
            if type(layer) is Linear and not layer._init_chosen \
                    and isinstance(after, XAVIER_BEFORE):
                layer.reset_weight("xavier")
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

    def named_children(self):
        return ((str(i), layer) for i, layer in enumerate(self.layers))

    def config(self):
        return {**super().config(), "layers": [m.config() for m in self.layers]}

    @classmethod
    def from_config(cls, kwargs):
        if not isinstance(kwargs.get("layers"), list):
            raise ValueError(f"a Sequential description needs a 'layers' list, got "
                             f"{kwargs!r}")
        return cls(*(from_config(c) for c in kwargs["layers"]))

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def forward(self, x):
        for step in self._plan:
            x = step.forward(x)
        return x

    def backward(self, grad, input_grad=True):
        """Backpropagate ``grad`` = dJ/d(output); returns dJ/d(input), or None when
        ``input_grad=False`` (which skips the layers before the first with parameters and
        that layer's input-gradient GEMM)."""
        first = 0 if input_grad else self._first_param_step
        if first is None:
            return None  # no parameters to fill and no input gradient wanted
        for i in range(len(self._plan) - 1, first - 1, -1):
            grad = self._plan[i].backward(grad, input_grad=input_grad or i > first)
        return grad


def _step_has_parameters(step):
    module = step.linear if isinstance(step, _LinearReLU) else step
    return any(True for _ in module.parameters())


for _cls in (Linear, Flatten, Dropout, Sequential):
    _register(_cls, builtin=True)
