"""Checkpoints: a model, its optimizer state and the epoch in one ``.npz`` file, no pickle.

Layout of the file (every entry an array, so ``np.load(path, allow_pickle=False)`` reads it):

- ``format``: the string ``"gpunet-checkpoint"``; ``format_version``: an integer,
- ``model_config``: ``model.config()`` as JSON; ``dtype``: the model's dtype name,
- ``param.NAME``: the weights (``model.state_dict()``),
- ``optimizer``: the optimizer's plain state values as JSON (type, lr, step,
  hyperparameters) and ``optimizer.buffer.NAME``: its state buffers (momentum, moments),
- ``best.NAME``: optional weights of the best epoch so far (kept for early stopping),
- ``epoch``: the number of finished epochs; ``meta``: further values as JSON.

Files are written atomically (``atomic.py``: a temporary file in the same directory, fsync,
rename), so a failed save never damages an existing checkpoint. Arrays are NumPy on disk: a
checkpoint written on the GPU loads on the CPU and the reverse. Loading trusts nothing the
file declares (``checkpoint_reader.py``, ``checkpoint_layout.py``): what a checkpoint may
declare is capped by :class:`LoadLimits`, and its cost is in proportion to its content.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ... import optim
from .atomic import atomic_write
from ...backend import get_backend
from .checkpoint_layout import BEST, BUFFER, PARAM, check_entries, implied_shapes
from .checkpoint_reader import DEFAULT_LIMITS, CheckpointError, LoadLimits, NpzReader
from ...checks import FLOAT_DTYPES, check_int
from ...nn.module import Module
from ...nn import check_rebuildable, from_config

FORMAT = "gpunet-checkpoint"
FORMAT_VERSION = 1
OPTIMIZERS = {cls.__name__: cls for cls in optim.OPTIMIZERS.values()}
_BUFFER_PREFIX = "buffer."
__all__ = ["Checkpoint", "CheckpointError", "DEFAULT_LIMITS", "LoadLimits", "load", "save",
           "saved_epoch"]


class Checkpoint:
    """What :func:`load` returns.

    ``model`` (rebuilt and on the requested device), ``optimizer_state`` (a dict for
    ``Optimizer.load_state_dict``, or None), ``epoch``, ``meta`` (the keywords given to
    :func:`save`), ``best_state`` (a state dict or None) and ``path``.
    """

    def __init__(self, path, model, optimizer_state, epoch, meta, best_state):
        self.path = path
        self.model = model
        self.optimizer_state = optimizer_state
        self.epoch = epoch
        self.meta = meta
        self.best_state = best_state

    def make_optimizer(self, params=None):
        """Rebuild the saved optimizer (type, hyperparameters, lr, step and buffers) over
        ``params`` (default: ``self.model.parameters()``)."""
        if self.optimizer_state is None:
            raise CheckpointError(f"{self.path} holds no optimizer state; create a new "
                                  f"optimizer instead")
        state = self.optimizer_state
        cls = OPTIMIZERS[state["type"]]
        hyper = {k: v for k, v in state.items()
                 if k not in ("type", "lr", "step") and not k.startswith(_BUFFER_PREFIX)}
        params = self.model.parameters() if params is None else params
        try:
            optimizer = cls(params, lr=state["lr"], **hyper)
            optimizer.load_state_dict(state)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.path}: the optimizer state does not fit the "
                                  f"parameters: {exc}") from exc
        return optimizer

    def __repr__(self):
        opt = self.optimizer_state["type"] if self.optimizer_state else None
        return (f"Checkpoint(path={self.path!r}, epoch={self.epoch}, optimizer={opt}, "
                f"meta keys={sorted(self.meta)})")


def _json_array(value, what):
    try:
        return np.array(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable (numbers, strings, lists, dicts): "
                        f"{exc}") from exc


def _checkpoint_arrays(model, optimizer, epoch, best_state, meta):
    if not isinstance(model, Module):
        raise TypeError(f"model must be a gpunet Module, got {type(model).__name__}")
    check_int(epoch, "epoch", 0)
    config = _rebuildable_config(model)
    arrays = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION),
        "model_config": _json_array(config, "model.config()"),
        "dtype": np.array(model.dtype.name),
        "epoch": np.array(int(epoch)),
        "meta": _json_array(meta, "meta"),
    }
    arrays.update({f"param.{k}": v for k, v in model.state_dict().items()})
    if optimizer is not None:
        state = optimizer.state_dict()
        plain = {k: v for k, v in state.items() if not k.startswith(_BUFFER_PREFIX)}
        arrays["optimizer"] = _json_array(plain, "optimizer state")
        arrays.update({f"optimizer.{k}": v for k, v in state.items()
                       if k.startswith(_BUFFER_PREFIX)})
    if best_state is not None:
        arrays.update({f"best.{k}": np.asarray(v) for k, v in best_state.items()})
    return arrays


def _rebuildable_config(model):
    """``model.config()``, checked at save time to rebuild the model's parameters, so that a
    layer :func:`load` could not rebuild fails now and not when the file is read."""
    check_rebuildable(model)
    config = model.config()
    unlimited = LoadLimits(max_parameters=2**62, max_layers=2**62)
    try:
        implied = implied_shapes(config, "the model", unlimited)
    except CheckpointError as exc:
        raise ValueError(f"cannot save {type(model).__name__}: {exc}") from None
    actual = {name: tuple(p.data.shape) for name, p in model.named_parameters()}
    if implied != actual:
        wrong = sorted(set(implied.items()) ^ set(actual.items()))[:4]
        raise ValueError(f"cannot save {type(model).__name__}: its config() does not rebuild "
                         f"its parameters (name and shape differ at {wrong}); a layer's "
                         f"config() must return the constructor arguments that built it")
    return config


def save(path, model, optimizer=None, *, epoch=0, best_state=None, **meta):
    """Write ``model`` (architecture, dtype, weights), the ``optimizer``'s state, ``epoch``
    and ``meta`` (JSON-able keywords) to the ``.npz`` file ``path``, atomically.

    ``best_state`` optionally keeps a second set of weights (the best epoch's, for early
    stopping). The file name is used as given (no ``.npz`` is appended). A failed write
    raises an OSError naming ``path`` and leaves the previous file there intact.
    """
    arrays = _checkpoint_arrays(model, optimizer, epoch, best_state, meta)
    return atomic_write(path, lambda f: np.savez(f, **arrays), what="checkpoint")


def _check_format(reader):
    fmt = reader.text("format") if "format" in reader.entries else None
    if fmt != FORMAT:
        raise CheckpointError(f"{reader.path} is an .npz file but not a gpunet checkpoint "
                              f"(format {fmt!r:.40}, expected {FORMAT!r})")
    version = reader.integer("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{reader.path} has checkpoint format version {version}; this "
                              f"gpunet reads version {FORMAT_VERSION}")


def _read_group(reader, prefix):
    return {k[len(prefix):]: reader.read(k) for k in reader.entries if k.startswith(prefix)}


def _build_model(reader, config, dtype, backend):
    path = reader.path
    try:
        model = from_config(config).to(backend, dtype)
    except KeyError as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model: its configuration lacks "
                              f"the key {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model: {exc}") from exc
    try:
        model.load_state_dict(_read_group(reader, PARAM))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: the weights do not fit the architecture: "
                              f"{exc}") from exc
    return model


def _optimizer_state(reader, limits):
    if "optimizer" not in reader.entries:
        return None
    state = reader.json_object("optimizer", limits)
    if state.get("type") not in OPTIMIZERS:
        raise CheckpointError(f"{reader.path}: unknown optimizer type "
                              f"{state.get('type')!r:.40}; expected one of {sorted(OPTIMIZERS)}")
    state.update({_BUFFER_PREFIX + k: v for k, v in _read_group(reader, BUFFER).items()})
    return state


def load(path, device="cpu", *, limits=None):
    """Read a checkpoint written by :func:`save`; the model is rebuilt on ``device``
    (``"cpu"``, ``"gpu"`` or ``"auto"``). Returns a :class:`Checkpoint`.

    The file is not trusted: what it may declare is capped by ``limits`` (a
    :class:`LoadLimits`, default :data:`DEFAULT_LIMITS`), and every entry is checked against
    the architecture before it is read; any problem raises :class:`CheckpointError`.
    """
    path = os.fspath(path)
    backend = get_backend(device)  # a bad device is the caller's error, not the file's
    limits = DEFAULT_LIMITS if limits is None else limits
    if not isinstance(limits, LoadLimits):
        raise TypeError(f"limits must be a gpunet.LoadLimits, got "
                        f"{type(limits).__name__}")
    with NpzReader(path) as reader:
        _check_format(reader)
        config = reader.json_object("model_config", limits)
        dtype = reader.text("dtype")
        if dtype not in {d.name for d in FLOAT_DTYPES}:
            raise CheckpointError(f"{path}: entry 'dtype' must be one of "
                                  f"{[d.name for d in FLOAT_DTYPES]}, got {dtype!r:.40}")
        shapes = implied_shapes(config, path, limits)
        check_entries(reader, shapes, np.dtype(dtype))  # headers only: nothing read yet
        epoch = reader.integer("epoch")
        if epoch < 0:
            raise CheckpointError(f"{path}: entry 'epoch' must be >= 0, got {epoch}")
        meta = reader.json_object("meta", limits)
        optimizer_state = _optimizer_state(reader, limits)
        model = _build_model(reader, config, dtype, backend)
        best_state = _read_group(reader, BEST) or None
    return Checkpoint(path, model, optimizer_state, epoch, meta, best_state)


def saved_epoch(path):
    """The epoch stored in the checkpoint ``path`` (reading that entry only), or None when
    there is no readable checkpoint there."""
    try:
        with NpzReader(os.fspath(path)) as reader:
            return reader.integer("epoch")
    except CheckpointError:
        return None
