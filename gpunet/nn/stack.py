"""``gn.stack(model, n, seeds=...)``: n models of one architecture computed as one model.

A :class:`Stack` holds, for each ``Linear(in, out)`` of the architecture, a weight (n, out, in)
and a bias (n, out) (``stacked_linear.py``), so one forward and one backward pass serve all
n models, and one optimizer step over the flat buffer updates them all, with a learning rate,
momentum or weight decay per model where given as n values (``ops/models.py``). Nothing else
knows it is a stack: ``gn.fit``, ``gn.evaluate``, the static step, ``gn.save`` take it as a
model whose outputs carry a leading model axis.

Inputs and outputs: ``stack(x)`` takes a batch shared by all models, (B, ...), or one batch per
group of models, (g, B, ...) with g dividing n (models ``[j * n/g, (j+1) * n/g)`` read row j;
g = n gives each model its own batch, as bagging or cross-validation folds need); it returns
(n, B, outputs). Losses then compute one mean per model (``CrossEntropyLoss`` returns (n,)
losses, labels (B,) shared or (g, B) per group), and ``stack.backward`` takes their gradient.

Model ``i`` starts as ``gn.manual_seed(seeds[i])`` followed by ``gn.from_config(config)``
would build it (for a network of ReLU layers or of explicitly initialised Linears, the same as
building the model itself after that ``manual_seed``); no global generator is touched.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import get_backend
from ..checks import check_int, check_positive_int
from .activations import LeakyReLU, ReLU, Sigmoid, Tanh
from .layers import Dropout, Flatten, Linear
from .module import Module
from .registry import _register, from_config
from .stacked_linear import StackedLinear

#: Layers a stacked architecture may hold besides Linear (elementwise, or Flatten before the
#: first Linear).
ELEMENTWISE = (ReLU, LeakyReLU, Sigmoid, Tanh, Dropout)


def stack(model, n, seeds=None) -> "Stack":
    """``n`` models of ``model``'s architecture (a ``gn.Sequential`` of Linear, Flatten,
    Dropout, ReLU, LeakyReLU, Sigmoid, Tanh) as one :class:`Stack` on ``model``'s device,
    model ``i`` initialised from ``seeds[i]`` (default ``range(n)``); ``model``'s own weights
    are not used."""
    if not isinstance(model, Module):
        raise TypeError(f"gn.stack expects a gpunet model (a gn.Sequential), got "
                        f"{type(model).__name__}")
    return Stack(model.config(), n, seeds, dtype=model.dtype).to(model.backend)


def _check_architecture(config):
    """The layer modules of a Sequential description, or an error naming what a stack takes."""
    if not isinstance(config, dict) or config.get("type") != "Sequential":
        got = config.get("type") if isinstance(config, dict) else type(config).__name__
        raise TypeError(f"a stack is built from a gn.Sequential, got {got!r}")
    layers = [_built_quietly(c) for c in config.get("layers", [])]
    linears = [i for i, layer in enumerate(layers) if type(layer) is Linear]
    if not linears:
        raise ValueError("a stack needs an architecture with at least one Linear layer")
    for i, layer in enumerate(layers):
        kind = type(layer)
        if kind is Flatten and i > linears[0]:
            raise ValueError(f"a stack takes Flatten before its first Linear only; layer {i} "
                             f"is a Flatten after it")
        if kind not in (Linear, Flatten) + ELEMENTWISE:
            raise TypeError(
                f"a stack cannot hold layer {i}, {kind.__name__}: it takes Linear, Flatten, "
                f"{', '.join(c.__name__ for c in ELEMENTWISE)} (end with logits and train "
                f"with CrossEntropyLoss rather than a Softmax or LogSoftmax layer)")
    return layers


def quietly(build):
    """``build()`` with the global weight generator left where it was (a Linear draws its
    weights when built; a stack draws its own from its seeds)."""
    rng = get_backend("cpu").host_rng
    state = rng.bit_generator.state
    try:
        return build()
    finally:
        rng.bit_generator.state = state


def _built_quietly(config):
    """``from_config(config)``, leaving the global weight generator alone."""
    return quietly(lambda: from_config(config))


def _check_seeds(seeds, n):
    seeds = list(range(n)) if seeds is None else list(seeds)
    if len(seeds) != n:
        raise ValueError(f"seeds must hold one seed per model, {n}, got {len(seeds)}")
    return [check_int(s, "each seed", 0) for s in seeds]


class _Flatten:
    """Flatten before the first Linear: (g, B, ...) -> (g, B, features)."""

    def __init__(self):
        self.shape = None

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], x.shape[1], -1)

    def backward(self, grad, input_grad=True):
        return grad.reshape(self.shape) if input_grad else None


class _Dense:
    """A StackedLinear, with the ReLU that follows it fused."""

    def __init__(self, linear, relu):
        self.linear, self.relu = linear, relu

    def forward(self, x):
        return self.linear.forward(x, relu=self.relu)

    def backward(self, grad, input_grad=True):
        return self.linear.backward(grad, input_grad, relu=self.relu)


class Stack(Module):
    """``models`` models of the architecture ``model`` (a ``Sequential.config()``) with
    parameters of shape (models, ...): see the module text. ``len(stack)`` is the number of
    models, ``stack[i]`` a copy of model ``i`` as a plain model, ``stack.unstack()`` all."""

    def __init__(self, model, models, seeds=None, *, dtype=np.float32):
        super().__init__(dtype)
        self.models = check_positive_int(models, "the number of models n")
        self.seeds = _check_seeds(seeds, self.models)
        self.architecture = model
        template = _check_architecture(model)
        first = next(i for i, layer in enumerate(template) if type(layer) is Linear)
        self.in_features = template[first].in_features
        self.layers = [self._stacked(layer, i == first) for i, layer in enumerate(template)]
        self._plan = self._make_plan(first)
        self._first_param_step = next(i for i, step in enumerate(self._plan)
                                      if isinstance(step, _Dense))
        self._groups, self._input_shape = None, None
        for model_index, seed in enumerate(self.seeds):
            rng = np.random.default_rng(seed)  # the draws gn.manual_seed(seed) would give
            for layer in self.layers:
                if isinstance(layer, StackedLinear):
                    layer.draw(model_index, rng)
        self.to(None, dtype)

    def _stacked(self, layer, first):
        if type(layer) is not Linear:
            return layer
        return StackedLinear(self.models, layer.in_features, layer.out_features,
                             layer.bias is not None, init=layer.init, first=first,
                             dtype=self.dtype)

    def _make_plan(self, first):
        plan, i = [], 0
        while i < len(self.layers):
            layer = self.layers[i]
            fused = (isinstance(layer, StackedLinear) and i + 1 < len(self.layers)
                     and type(self.layers[i + 1]) is ReLU)
            if isinstance(layer, StackedLinear):
                plan.append(_Dense(layer, fused))
            else:
                plan.append(_Flatten() if type(layer) is Flatten else layer)
            i += 2 if fused else 1
        return plan

    def config(self):
        return {**super().config(), "model": self.architecture, "models": self.models,
                "seeds": list(self.seeds)}

    def named_children(self):
        return ((str(i), layer) for i, layer in enumerate(self.layers))

    # -- the models ------------------------------------------------------------------------
    def __len__(self):
        return self.models

    def __getitem__(self, index):
        """Model ``index`` as a plain model (a copy of its weights, on the stack's device)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"a stack is indexed by a model number, got {index!r}")
        if not -self.models <= index < self.models:
            raise IndexError(f"model {index} of a stack of {self.models}")
        index = int(index) % self.models
        model = _built_quietly(self.architecture).to(self.backend, self.dtype)
        model.load_state_dict({name: p.data[index] for name, p in self.named_parameters()})
        model.train(self.training)
        return model

    def __iter__(self):
        return (self[i] for i in range(self.models))

    def unstack(self):
        """The ``n`` models as plain models (copies), in order."""
        return list(self)

    # -- forward and backward --------------------------------------------------------------
    def _grouped(self, x):
        """``x`` as (g, B, ...): a shared batch (B, ...) is one group; (g, B, ...) is read as
        g groups when its samples do not fit as one batch (see the module text)."""
        flattens = isinstance(self._plan[0], _Flatten)
        fits = (lambda sample: math.prod(sample) == self.in_features
                and (flattens or len(sample) == 1))
        if x.ndim >= 2 and fits(x.shape[1:]):
            return x[None]
        if x.ndim >= 3 and self.models % max(x.shape[0], 1) == 0 and fits(x.shape[2:]):
            return x
        raise ValueError(
            f"a stack of {self.models} models takes a batch (B, {self.in_features}) shared by "
            f"all models, or (g, B, {self.in_features}) with one batch per group of "
            f"{self.models} / g models (g dividing {self.models})"
            f"{'; samples of any shape with that many values' if flattens else ''}; got shape "
            f"{tuple(x.shape)}")

    def forward(self, x):
        grouped = self._grouped(x)
        self._groups, self._input_shape = grouped.shape[0], x.shape
        h = grouped
        for step in self._plan:
            h = step.forward(h)
        if not h.flags.c_contiguous:  # a stack whose only Linear is the last layer
            h = _copy_into(self._buffer("out", h.shape), h)
        return h.reshape(self.models, h.shape[2], h.shape[3])

    def backward(self, grad, input_grad=True):
        """Backpropagate ``grad`` (n, B, outputs); returns dJ/d(input) in the input's shape
        (for a shared input, summed over the models), or None when ``input_grad=False``."""
        groups, models = self._saved(self._groups), self.models
        if grad.ndim != 3 or grad.shape[0] != models:
            raise ValueError(f"Stack.backward expects a gradient of shape ({models}, batch, "
                             f"outputs), got {tuple(grad.shape)}")
        grad = grad.reshape(groups, models // groups, grad.shape[1], grad.shape[2])
        first = 0 if input_grad else self._first_param_step
        for i in range(len(self._plan) - 1, first - 1, -1):
            grad = self._plan[i].backward(grad, input_grad=input_grad or i > first)
        return grad.reshape(self._input_shape) if input_grad else None


def models_of(model):
    """The number of models of a stack, None for any other model."""
    return model.models if isinstance(model, Stack) else None


def check_model_targets(name, scores, labels):
    """Validate a stack's (n, batch, classes) scores against integer labels (batch,) shared
    by the models or (g, batch), one row per group of n / g models."""
    models, batch = scores.shape[:2]
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{name} expects integer class labels, got dtype {labels.dtype}")
    shared = labels.shape == (batch,)
    grouped = labels.ndim == 2 and labels.shape[1] == batch and labels.shape[0] >= 1 \
        and models % labels.shape[0] == 0
    if not (shared or grouped):
        raise ValueError(f"{name} expects labels ({batch},) shared by the {models} models or "
                         f"(g, {batch}), one row per group of {models} / g models, got labels "
                         f"of shape {tuple(labels.shape)}")


def _copy_into(buffer, a):
    buffer[...] = a
    return buffer


_register(Stack, builtin=True)
