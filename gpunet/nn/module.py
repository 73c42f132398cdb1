"""``Module``: the base of every layer: forward, backward, sub-modules, parameters, device,
state and pickling."""
from __future__ import annotations

import numpy as np

from ..backend import get_backend, to_numpy
from ..checks import check_dtype
from ..ops.workspace import Workspace
from .boundary import public
from .parameter import Parameter, flatten_parameters


def _parameters_of(value) -> list:
    if isinstance(value, Parameter):
        return [value]
    return list(value.parameters()) if isinstance(value, Module) else []


def _note_replaced(owner, name, old, new) -> None:
    """When ``owner.name = new`` (or ``del``) takes packed parameters out of the model, mark
    their flat buffer: an optimizer over it would update parameters the model no longer uses
    (and not the new ones), so its ``step`` raises instead (see ``FlatBuffers.replaced``)."""
    if old is None or old is new:
        return
    kept = {id(p) for p in _parameters_of(new)}
    for p in _parameters_of(old):
        if p.flat is not None and id(p) not in kept:
            what = "deleted" if new is None else f"replaced by a new {type(new).__name__}"
            p.flat.replaced.append(f"{type(owner).__name__}.{name} (holding {p!r}) was {what}")


class Module:
    """A node of the computation graph: ``forward`` caches what ``backward`` needs.

    Subclass it as you would ``torch.nn.Module``: call ``super().__init__()`` first, then
    assign layers and :class:`Parameter` objects as attributes (they are registered, in
    assignment order, as children and parameters: ``print(model)``, ``model.parameters()``,
    ``model.to(...)`` and ``state_dict()`` see them), and define ``forward`` and, since
    gpunet has no autograd, ``backward``.

    Arrays that a call from user code returns (``model(x)``, ``model.backward(g)``) are new
    arrays, the caller's to keep. Inside a model each layer hands its reused workspace buffers
    to the next (allocated once per batch shape): see ``boundary.py``.
    """

    #: Attributes left out when pickling or deep-copying: caches of the last forward pass,
    #: rebuilt by the next one. Each subclass lists its own; the lists of the bases add up.
    _transient: tuple[str, ...] = ("_workspace",)

    def __init__(self, dtype=np.float32):
        object.__setattr__(self, "_children", {})
        object.__setattr__(self, "_params", {})
        self.training = True
        self.dtype = check_dtype(dtype)
        self.backend = get_backend("cpu")
        self._workspace = Workspace(self.backend.xp)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("forward", "backward"):  # user calls get their own arrays
            if name in cls.__dict__:
                setattr(cls, name, public(cls.__dict__[name]))

    # -- calling -------------------------------------------------------------------------
    def __call__(self, x):
        """Check ``x`` and run :meth:`forward`.

        ``x`` must be an array of the module's backend. Floating input of another precision
        is cast to the module's dtype (a copy); integer input (raw image bytes) is refused.
        """
        self.backend.check_array(x)
        if x.dtype != self.dtype:
            if x.dtype.kind != "f":
                raise TypeError(
                    f"expected floating-point input of dtype {self.dtype}, got {x.dtype}; "
                    f"scale integer data first (gpunet.datasets.to_float for images)"
                )
            x = x.astype(self.dtype)
        return self.forward(x)

    def forward(self, x):
        """Return the output for the batch ``x`` (batch axis first) and keep what
        :meth:`backward` needs (e.g. ``self.x = x``). Use ``self.backend.xp`` (NumPy or
        CuPy) for array functions, so the layer runs on either device."""
        raise NotImplementedError(
            f"{type(self).__name__}.forward is not defined: a Module subclass defines "
            f"forward(self, x), which returns the output and keeps what backward needs")

    def backward(self, grad, input_grad=True):
        """Given ``grad`` = dJ/d(output) of the last forward pass, fill ``p.grad`` of this
        module's parameters (overwrite, don't accumulate) and return dJ/d(input) (the
        upstream gradient times the local gradient), or None when ``input_grad`` is False
        (the first layer of a model needs no input gradient)."""
        name = type(self).__name__
        children = [n for n, _ in self.named_children()]
        if children:
            order = ", ".join(f"self.{n}" for n in reversed(children))
            fix = (f"write {name}.backward(self, grad, input_grad=True) that runs the "
                   f"children's backward in the reverse of the order forward runs them "
                   f"(in reverse assignment order: {order}), passing each result to the "
                   f"next and input_grad to the last, and returns its result; or build the "
                   f"model as gn.Sequential(...), which does this for you")
        else:
            fix = (f"write {name}.backward(self, grad, input_grad=True) returning dJ/d(input) "
                   f"for grad = dJ/d(output) (the README's custom-layer recipe shows one, "
                   f"checked with gn.gradcheck)")
        raise NotImplementedError(f"{name}.backward is not defined, and gpunet has no autograd "
                                  f"to derive it from forward: {fix}")

    def _buffer(self, name, shape):
        """A reusable workspace array of ``shape`` in the module's dtype (one per shape)."""
        return self._workspace.get(name, shape, self.dtype)

    def _saved(self, value, what="forward"):
        """Return a value cached by forward, or explain that forward has not run."""
        if value is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called before {what}: run a forward pass "
                f"on a batch first"
            )
        return value

    # -- structure -----------------------------------------------------------------------
    def __setattr__(self, name, value):
        registry = self.__dict__.get("_children")
        if isinstance(value, (Module, Parameter)) and registry is None:
            raise AttributeError(
                f"cannot assign {type(value).__name__} to {type(self).__name__}.{name} before "
                f"Module.__init__() has run: call super().__init__() first in "
                f"{type(self).__name__}.__init__")
        if registry is not None:  # a name assigned again keeps its place in the order
            _note_replaced(self, name, self.__dict__.get(name), value)
            if isinstance(value, Module):
                self._params.pop(name, None)
                self._children[name] = value
            elif isinstance(value, Parameter):
                self._children.pop(name, None)
                self._params[name] = value
            else:
                self._children.pop(name, None)
                self._params.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        _note_replaced(self, name, self.__dict__.get(name), None)
        self._children.pop(name, None)
        self._params.pop(name, None)
        object.__delattr__(self, name)

    def named_children(self):
        """``(name, sub-module)`` pairs, in assignment order."""
        return iter(self._children.items())

    def children(self):
        """Direct sub-modules, in order."""
        return (child for _, child in self.named_children())

    def own_parameters(self):
        """``(name, Parameter)`` pairs held directly by this module, in assignment order."""
        return iter(self._params.items())

    def named_modules(self, prefix=""):
        """``(dotted path, module)`` for this module (path ``prefix``) and all its
        descendants, depth first, each once."""
        seen = set()

        def walk(module, path):
            if id(module) not in seen:
                seen.add(id(module))
                yield path, module
                for name, child in module.named_children():
                    yield from walk(child, f"{path}.{name}" if path else name)

        return walk(self, prefix)

    def modules(self):
        """This module and all its descendants, depth first, each once."""
        return (module for _, module in self.named_modules())

    def named_parameters(self, prefix=""):
        """``(dotted name, Parameter)`` in layer order, weight before bias, each once."""
        seen = set()
        for name, p in self._all_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _all_parameters(self, prefix):
        for name, p in self.own_parameters():
            yield prefix + name, p
        for name, child in self.named_children():
            yield from child._all_parameters(f"{prefix}{name}.")

    def parameters(self):
        """The parameters in layer order, weight before bias."""
        for _, p in self.named_parameters():
            yield p

    def config(self) -> dict:
        """A JSON-able description from which :func:`gpunet.nn.from_config` rebuilds the
        module: ``{"type": class name, **constructor keywords}``. A layer whose constructor
        takes arguments returns them here (see :func:`gpunet.register_layer`)."""
        return {"type": type(self).__name__}

    @classmethod
    def from_config(cls, kwargs: dict):
        """Build the module from :meth:`config` output less its ``type``: ``cls(**kwargs)``.
        A layer whose description is more than constructor keywords overrides this."""
        return cls(**kwargs)

    # -- modes, devices, state -----------------------------------------------------------
    def train(self, mode: bool = True):
        """Training mode (dropout active); returns self."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (dropout off); returns self."""
        return self.train(False)

    def to(self, device=None, dtype=None):
        """Move to ``"cpu"``/``"gpu"``/``"auto"`` and/or cast to ``dtype``; returns self.

        Parameters are copied to the new device and packed into one flat buffer; create the
        optimizer after moving the model.
        """
        backend = get_backend(device) if device is not None else self.backend
        dt = check_dtype(dtype) if dtype is not None else self.dtype
        for m in self.modules():
            m.backend, m.dtype, m._workspace = backend, dt, Workspace(backend.xp)
            for _, p in m.own_parameters():
                data = backend.asarray(p.data, dtype=dt)
                p.bind(data, backend.xp.zeros_like(data))
        params = list(self.parameters())
        if params:
            flatten_parameters(params, backend.xp)
        return self

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"gpu"``."""
        return self.backend.name

    def state_dict(self) -> dict:
        """Parameter values as NumPy arrays (copies), keyed by dotted name."""
        return {name: to_numpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict) -> None:
        """Copy values from :meth:`state_dict` output (any backend) into the parameters."""
        params = dict(self.named_parameters())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise KeyError(
                f"state dict does not match the model: missing {missing}, unexpected {unexpected}"
            )
        for name, p in params.items():
            value = np.asarray(to_numpy(state[name]))
            if tuple(value.shape) != tuple(p.data.shape):
                raise ValueError(
                    f"shape mismatch for {name!r}: the model expects {tuple(p.data.shape)}, "
                    f"the state dict has {tuple(value.shape)}"
                )
        for name, p in params.items():
            p.data[...] = self.backend.asarray(state[name], dtype=self.dtype)

    # -- pickling and printing -----------------------------------------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        for cls in type(self).__mro__:
            for name in cls.__dict__.get("_transient", ()):
                if name in state:
                    state[name] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__["_workspace"] = Workspace(self.backend.xp)

    def __repr__(self) -> str:
        children = list(self.named_children())
        if children:
            inner = "".join(f"\n  ({name}): " + repr(child).replace("\n", "\n  ")
                            for name, child in children)
            return f"{type(self).__name__}({inner}\n)"
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"
