"""``Module``: the base of every layer: forward, backward, parameters, device, state."""
from __future__ import annotations

import numpy as np

from ..backend import get_backend, to_numpy
from ..checks import check_dtype
from ..ops.workspace import Workspace
from .parameter import flatten_parameters


class Module:
    """A node of the computation graph: ``forward`` caches what ``backward`` needs.

    ``backward(grad)`` takes dJ/d(output) and returns dJ/d(input) (the chain rule: upstream
    gradient times local gradient), filling ``p.grad`` of its own parameters on the way.

    Arrays returned by ``forward`` and ``backward`` are workspace buffers owned by the module
    and reused by its next call (allocated once per batch shape): copy one if you need it to
    outlive the next call.
    """

    def __init__(self, dtype=np.float32):
        self.training = True
        self.dtype = check_dtype(dtype)
        self.backend = get_backend("cpu")
        self._workspace = Workspace(self.backend.xp)

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
        raise NotImplementedError

    def backward(self, grad, input_grad=True):
        raise NotImplementedError

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
    def children(self):
        """Direct sub-modules, in order."""
        return ()

    def own_parameters(self):
        """``(name, Parameter)`` pairs held directly by this module."""
        return ()

    def modules(self):
        """This module and all its descendants, depth first."""
        yield self
        for child in self.children():
            yield from child.modules()

    def named_parameters(self, prefix=""):
        """``(dotted name, Parameter)`` in layer order, weight before bias."""
        for name, p in self.own_parameters():
            yield prefix + name, p
        for i, child in enumerate(self.children()):
            yield from child.named_parameters(f"{prefix}{i}.")

    def parameters(self):
        """The parameters in layer order, weight before bias."""
        for _, p in self.named_parameters():
            yield p

    def config(self) -> dict:
        """A JSON-able description from which :func:`gpunet.nn.from_config` rebuilds it."""
        return {"type": type(self).__name__}

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
                p.data = backend.asarray(p.data, dtype=dt)
                p.grad = backend.xp.zeros_like(p.data)
                p.flat = None
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

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"
