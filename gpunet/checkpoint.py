"""Checkpoints: a model, its optimizer state and the epoch in one ``.npz`` file, no pickle.

Layout of the file (every entry an array, so ``np.load(path, allow_pickle=False)`` reads it):

- ``format``: the string ``"gpunet-checkpoint"``; ``format_version``: an integer,
- ``model_config``: ``model.config()`` as JSON; ``dtype``: the model's dtype name,
- ``param.NAME``: the weights (``model.state_dict()``),
- ``optimizer``: the optimizer's plain state values as JSON (type, lr, step,
  hyperparameters) and ``optimizer.buffer.NAME``: its state buffers (momentum, moments),
- ``best.NAME``: optional weights of the best epoch so far (kept for early stopping),
- ``epoch``: the number of finished epochs; ``meta``: further values as JSON.

Files are written atomically (a temporary file in the same directory, fsync, rename), so a
failed save never damages an existing checkpoint. Arrays are NumPy on disk: a checkpoint
written on the GPU loads on the CPU and the reverse.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from . import optim
from .backend import get_backend
from .module import Module
from .nn import from_config

FORMAT = "gpunet-checkpoint"
FORMAT_VERSION = 1
OPTIMIZERS = {cls.__name__: cls for cls in (optim.SGD, optim.Adam, optim.AdamW)}
_BUFFER_PREFIX = "buffer."


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not match: corrupt, truncated, of
    another format version, or with shapes that do not fit the architecture."""


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
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
    arrays = {
        "format": np.array(FORMAT),
        "format_version": np.array(FORMAT_VERSION),
        "model_config": _json_array(model.config(), "model.config()"),
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


def save(path, model, optimizer=None, *, epoch=0, best_state=None, **meta):
    """Write ``model`` (architecture, dtype, weights), the ``optimizer``'s state, ``epoch``
    and ``meta`` (JSON-able keywords) to the ``.npz`` file ``path``, atomically.

    ``best_state`` optionally keeps a second set of weights (the best epoch's, for early
    stopping). The file name is used as given (no ``.npz`` is appended).
    """
    path = os.fspath(path)
    arrays = _checkpoint_arrays(model, optimizer, epoch, best_state, meta)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    return path


def _fsync_directory(directory):
    """Make the rename durable where the platform allows it (POSIX)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_arrays(path):
    """Every entry of the ``.npz`` file as a NumPy array, or a CheckpointError."""
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not an .npz file (no zip archive found: another "
                              f"kind of file, or a truncated checkpoint)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}: the file does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory, not a checkpoint file") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a readable gpunet checkpoint (corrupt or "
                              f"truncated .npz file): {exc}") from exc


def _json_dict_entry(arrays, key, path):
    """The entry ``key``, a JSON object, as a dict."""
    try:
        value = json.loads(str(arrays[key][()]))
    except KeyError:
        raise CheckpointError(f"{path} lacks the entry {key!r}") from None
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: entry {key!r} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: entry {key!r} must hold a JSON object (dict), got "
                              f"{type(value).__name__} {value!r:.60}")
    return value


def _int_entry(arrays, key, path):
    try:
        return int(arrays[key][()])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path} has no readable {key!r} entry") from None


def _check_format(arrays, path):
    fmt = str(arrays["format"][()]) if "format" in arrays else None
    if fmt != FORMAT:
        raise CheckpointError(f"{path} is an .npz file but not a gpunet checkpoint "
                              f"(format {fmt!r}, expected {FORMAT!r})")
    version = _int_entry(arrays, "format_version", path)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version}; this "
                              f"gpunet reads version {FORMAT_VERSION}")


def _prefixed(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _build_model(arrays, path, backend):
    config = _json_dict_entry(arrays, "model_config", path)
    if "dtype" not in arrays:
        raise CheckpointError(f"{path} lacks the entry 'dtype'")
    dtype = str(arrays["dtype"][()])
    try:
        model = from_config(config).to(backend, dtype)
    except KeyError as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model: its configuration lacks "
                              f"the key {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model: {exc}") from exc
    try:
        model.load_state_dict(_prefixed(arrays, "param."))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: the weights do not fit the architecture: "
                              f"{exc}") from exc
    return model


def load(path, device="cpu"):
    """Read a checkpoint written by :func:`save`; the model is rebuilt on ``device``
    (``"cpu"``, ``"gpu"`` or ``"auto"``). Returns a :class:`Checkpoint`."""
    path = os.fspath(path)
    backend = get_backend(device)  # a bad device is the caller's error, not the file's
    arrays = _read_arrays(path)
    _check_format(arrays, path)
    model = _build_model(arrays, path, backend)
    optimizer_state = None
    if "optimizer" in arrays:
        optimizer_state = _json_dict_entry(arrays, "optimizer", path)
        if optimizer_state.get("type") not in OPTIMIZERS:
            raise CheckpointError(f"{path}: unknown optimizer type "
                                  f"{optimizer_state.get('type')!r}; expected one of "
                                  f"{sorted(OPTIMIZERS)}")
        optimizer_state.update({_BUFFER_PREFIX + k: v for k, v in
                                _prefixed(arrays, "optimizer." + _BUFFER_PREFIX).items()})
    best_state = _prefixed(arrays, "best.") or None
    if best_state is not None:
        expected = {k: v.shape for k, v in _prefixed(arrays, "param.").items()}
        got = {k: v.shape for k, v in best_state.items()}
        if expected != got:
            raise CheckpointError(f"{path}: the best-epoch weights do not match the model "
                                  f"(expected {expected}, got {got})")
    epoch = _int_entry(arrays, "epoch", path)
    meta = _json_dict_entry(arrays, "meta", path)
    return Checkpoint(path, model, optimizer_state, epoch, meta, best_state)
