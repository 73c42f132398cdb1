"""Optimizers over the flat parameter buffer: one update call per step for all parameters.

Full-batch GD, SGD and mini-batch GD are the same optimizer fed batches of different sizes.
The learning rate and the step count live in 1-element device arrays, so an update needs no
host synchronisation (and a captured CUDA graph can read them).

The parameters of a stack (``gn.stack``: n models with a leading model axis) take one value
per model wherever a scalar is taken (``lr``, ``momentum``, ``weight_decay``, Adam's ``betas``
and ``eps``): n numbers instead of one. The learning rate of a stack's optimizer is then an n-
element device array; other per-model values are n-element device arrays too, and the update
reads each model's value along the flat buffer (``ops/models.py``), still one call.
"""
from __future__ import annotations

import numpy as np

from .backend import backend_of, to_numpy
from .checks import check_per_model
from .nn.module import Module
from .nn.parameter import Parameter, flatten_parameters
from .ops.models import ModelLayout


class Optimizer:
    """Holds the parameters (packed into one flat buffer) and the update's state."""

    buffer_names: tuple = ()

    def __init__(self, params, lr):
        params = _parameter_list(params, type(self).__name__)
        self.backend = backend_of(params[0].data)
        xp = self.backend.xp
        self.flat = flatten_parameters(params, xp)
        self.model_layout = _model_layout(self.flat.params)
        dtype = self.flat.data.dtype
        self._lr = xp.zeros(1 if self.model_layout is None else self.model_layout.models,
                            dtype=dtype)
        self._step = xp.zeros(1, dtype=dtype)
        self.step_count = 0
        self._on_device: dict = {}
        self.lr = lr
        self.buffers = {name: xp.zeros_like(self.flat.data) for name in self.buffer_names}

    @property
    def models(self) -> int | None:
        """The number of models of the stack whose parameters this updates (None: plain)."""
        return None if self.model_layout is None else self.model_layout.models

    @property
    def lr(self):
        """The learning rate (settable, e.g. by a schedule): a float, or for a stack's
        parameters an array of one rate per model (set it from one number or n)."""
        if self.model_layout is None:
            return self._lr_value
        return np.array(self._lr_value, dtype=np.float64)

    @lr.setter
    def lr(self, value):
        value = check_per_model(value, "lr", self.models, low=0)
        if self.model_layout is None:
            self._lr_value = value
            self._lr.fill(value)
            return
        self._lr_value = value if isinstance(value, tuple) else (value,) * self.models
        self._lr[...] = self.backend.asarray(np.array(self._lr_value), dtype=self._lr.dtype)

    def _device(self, name):
        """The hyperparameter ``name`` as the update takes it: a float, or (per model) n
        values in a device array made once (rewritten in place when the values change)."""
        value = getattr(self, name)
        if not isinstance(value, tuple):
            return value
        held, array = self._on_device.get(name, (None, None))
        if array is None:
            array = self.backend.asarray(np.array(value, dtype=np.float64))
        elif held != value:
            array[...] = self.backend.asarray(np.array(value, dtype=np.float64))
        self._on_device[name] = (value, array)
        return array

    def check_parameters(self):
        """Raise RuntimeError if the parameters this optimizer updates are no longer the
        model's: moved or re-packed (``model.to(...)``), or replaced by a module attribute
        assignment (``layer.weight = gn.Parameter(...)``, ``model.fc = gn.Linear(...)``)
        after the optimizer was created."""
        name = type(self).__name__
        if self.flat.replaced:
            raise RuntimeError(
                f"the model changed after this {name} was created: "
                f"{'; '.join(self.flat.replaced)}. The {name} would go on updating the old "
                f"parameters and leave the new ones untrained: create it again from "
                f"model.parameters() (its state, e.g. momentum, starts afresh), or write new "
                f"values in place instead (layer.weight.data = values copies them into the "
                f"buffer the optimizer trains)")
        if self.flat.params[0].flat is not self.flat:
            raise RuntimeError(
                f"the parameters of this {name} were moved or re-packed (model.to(...) after "
                f"the optimizer was created); create the optimizer after moving the model")

    def step(self):
        """Update every parameter from its ``grad`` (one fused update over the flat buffer).
        Raises RuntimeError if the model's parameters were replaced since the optimizer was
        created (see :meth:`check_parameters`)."""
        self.check_parameters()
        self.step_count += 1
        self._update()

    def _update(self):
        raise NotImplementedError(f"{type(self).__name__} must define _update(self), the "
                                  f"in-place update of self.flat.data from self.flat.grad")

    def zero_grad(self):
        """Set every gradient to zero (optional: ``backward`` overwrites gradients)."""
        self.flat.grad.fill(0)

    def hyperparameters(self) -> dict:
        """The constructor's keyword arguments other than ``lr``."""
        raise NotImplementedError(f"{type(self).__name__} must define hyperparameters(self), "
                                  f"its constructor's keyword arguments other than lr")

    def check_holds(self, model) -> None:
        """Raise ValueError unless every parameter this optimizer updates is one of
        ``model``'s (an optimizer created for another model, e.g. by a notebook cell run
        again, would train nothing the model uses); RuntimeError as :meth:`check_parameters`."""
        self.check_parameters()
        own = {id(p) for p in model.parameters()}
        foreign = sum(id(p) not in own for p in self.flat.params)
        if foreign:
            total = len(self.flat.params)
            held = ("none of the parameters it holds belongs" if foreign == total else
                    f"only {total - foreign} of the {total} parameters it holds belong")
            raise ValueError(
                f"the {type(self).__name__} does not update this model: {held} to the "
                f"model (was it created for another model, "
                f"e.g. by a cell run again?); create it from this model: "
                f"gn.optim.{type(self).__name__}(model.parameters(), ...)")

    def state_dict(self) -> dict:
        """Plain values and NumPy arrays: ``type``, ``lr``, ``step``, hyperparameters and
        the state buffers (``buffer.NAME``), portable between backends."""
        state = {"type": type(self).__name__, "lr": self._lr_value, "step": self.step_count}
        state.update(self.hyperparameters())
        for name, buf in self.buffers.items():
            state[f"buffer.{name}"] = to_numpy(buf).copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` output (any backend).

        The state must come from an optimizer of the same type and hyperparameters (so no
        saved buffer is dropped); everything is checked before anything changes.
        """
        if not isinstance(state, dict) or state.get("type") != type(self).__name__:
            got = state.get("type") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"optimizer state is for {got!r}, this optimizer is "
                             f"{type(self).__name__!r}")
        missing = [k for k in ("lr", "step", *self.hyperparameters(),
                               *(f"buffer.{name}" for name in self.buffers)) if k not in state]
        if missing:
            raise KeyError(f"optimizer state lacks {missing}")
        for key, value in self.hyperparameters().items():
            if _as_tuples(state[key]) != _as_tuples(value):
                raise ValueError(f"optimizer state has {key}={state[key]!r}, this optimizer "
                                 f"has {key}={value!r}; create it with the saved settings "
                                 f"(gpunet.load(...).make_optimizer() does)")
        for name, buf in self.buffers.items():
            value = np.asarray(state[f"buffer.{name}"])
            if value.shape != tuple(buf.shape):
                raise ValueError(f"optimizer state 'buffer.{name}' has shape {value.shape}, "
                                 f"the parameters need {tuple(buf.shape)}")
        check_per_model(state["lr"], "lr", self.models, low=0)
        for name, buf in self.buffers.items():
            buf[...] = self.backend.asarray(state[f"buffer.{name}"], dtype=buf.dtype)
        self.lr = state["lr"]
        self.step_count = int(state["step"])
        self._step.fill(self.step_count)


def _as_tuples(value):
    """Lists (as JSON gives them back) as tuples, nested, for comparing saved settings."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


def _stack_size(params):
    """The number of models of the stack whose parameters ``params`` are (None: plain)."""
    counts = {getattr(p, "models", None) for p in params}
    if len(counts) > 1:
        raise ValueError(f"the parameters mix those of stacks of "
                         f"{sorted(c for c in counts if c)} models"
                         f"{' and plain ones' if None in counts else ''}; an optimizer updates "
                         f"one stack (gn.stack) or plain models")
    return counts.pop()


def _model_layout(params):
    """The :class:`ModelLayout` of a stack's parameters (None for plain parameters)."""
    models = _stack_size(params)
    return None if models is None else ModelLayout(models, [p.data.size for p in params])


def _values(value):
    """A hyperparameter's values: the per-model tuple, or the scalar as a 1-tuple."""
    return value if isinstance(value, tuple) else (value,)


def _parameter_list(params, name):
    """``params`` as a non-empty list of Parameters, or an error saying what to pass."""
    if isinstance(params, Module):
        raise TypeError(f"{name} expects the model's parameters, got the model itself "
                        f"({type(params).__name__}); pass model.parameters(): "
                        f"{name}(model.parameters(), lr=...)")
    try:
        params = list(params)
    except TypeError:
        raise TypeError(f"{name} expects an iterable of gpunet Parameters "
                        f"(model.parameters()), got {type(params).__name__}") from None
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{name} expects gpunet Parameters (model.parameters()), got "
                            f"{type(p).__name__} at position {i}")
    if not params:
        raise ValueError(
            f"{name} got an empty parameter list; pass model.parameters() of a model that "
            f"has parameters (a Module finds its layers when they are assigned as "
            f"attributes, self.fc = gn.Linear(...), or given to gn.Sequential; a plain list "
            f"of layers is not searched), and note that a parameters() generator is used up "
            f"once read")
    return params


class SGD(Optimizer):
    """Stochastic gradient descent: ``p -= lr * g``, with optional (Nesterov) momentum and
    L2 weight decay added to the gradient."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        params = _parameter_list(params, type(self).__name__)
        models = _stack_size(params)
        self.momentum = check_per_model(momentum, "momentum", models, low=0, high=1,
                                        high_open=True)
        self.weight_decay = check_per_model(weight_decay, "weight_decay", models, low=0)
        self.nesterov = bool(nesterov)
        if self.nesterov and min(_values(self.momentum)) == 0:
            raise ValueError(f"nesterov=True needs momentum > 0 (for every model), got "
                             f"momentum={self.momentum}")
        self.buffer_names = ("momentum",) if any(_values(self.momentum)) else ()
        super().__init__(params, lr)

    def hyperparameters(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}

    def _update(self):
        self.backend.ops.sgd_update(
            self.flat.data, self.flat.grad, self.buffers.get("momentum"), self._lr,
            momentum=self._device("momentum") if self.buffer_names else 0.0,
            weight_decay=self._device("weight_decay"),
            nesterov=self.nesterov, models=self.model_layout)


class Adam(Optimizer):
    """Adam: bias-corrected first and second moment estimates of the gradient; weight
    decay is L2 added to the gradient."""

    buffer_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        params = _parameter_list(params, type(self).__name__)
        models = _stack_size(params)
        self.beta1 = check_per_model(betas[0], "betas[0]", models, low=0, high=1,
                                     high_open=True)
        self.beta2 = check_per_model(betas[1], "betas[1]", models, low=0, high=1,
                                     high_open=True)
        self.eps = check_per_model(eps, "eps", models, low=0)
        self.weight_decay = check_per_model(weight_decay, "weight_decay", models, low=0)
        super().__init__(params, lr)

    def hyperparameters(self):
        return {"betas": (self.beta1, self.beta2), "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self):
        self._step += 1  # the bias corrections read the step count on the device
        self.backend.ops.adam_update(
            self.flat.data, self.flat.grad, self.buffers["exp_avg"],
            self.buffers["exp_avg_sq"], self._lr, self._step, beta1=self._device("beta1"),
            beta2=self._device("beta2"), eps=self._device("eps"),
            weight_decay=self._device("weight_decay"), decoupled=self.decoupled,
            models=self.model_layout)


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` each step."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


#: Optimizers by the names the CLI and the benchmark use, and their default hyperparameters:
#: the one table of defaults (``gpunet train`` and ``gpunet bench`` read it).
OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
DEFAULTS = {"sgd": {"lr": 0.05, "momentum": 0.9}, "adam": {"lr": 1e-3}, "adamw": {"lr": 1e-3}}
