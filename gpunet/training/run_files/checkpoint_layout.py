"""What a checkpoint's entries must be, worked out from its architecture before anything
is built or read: the parameter shapes an architecture implies (within
:class:`~gpunet.checkpoint_reader.LoadLimits`), and a check of every entry's name, shape and
dtype against them."""
from __future__ import annotations

import math

from .checkpoint_reader import CheckpointError
from ...nn import LAYERS, from_config
from ...nn.registry import is_builtin

#: Entries holding one value each (a string, an integer or a JSON text).
SCALAR_ENTRIES = ("format", "format_version", "model_config", "dtype", "epoch", "meta",
                  "optimizer")
#: Prefixes of the array entries: the weights, the best epoch's weights, optimizer buffers.
PARAM, BEST, BUFFER = "param.", "best.", "optimizer.buffer."
MAX_BUFFERS = 8  # optimizer state buffers (SGD has one, Adam two)


def _size(config, key, path):
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{path}: cannot rebuild the model: {config['type']} needs "
                              f"{key} as a positive integer, got {value!r:.40}")
    return value


def implied_shapes(config, path, limits):
    """``{parameter name: shape}`` of the model that ``config`` describes (names as in
    ``Module.named_parameters``), without building it; CheckpointError past ``limits``."""
    shapes, count = {}, {"layers": 0, "parameters": 0}
    _walk(config, "", shapes, count, path, limits)
    return shapes


def _walk(config, prefix, shapes, count, path, limits):
    if not isinstance(config, dict) or config.get("type") not in LAYERS:
        raise CheckpointError(f"{path}: cannot rebuild the model: unknown layer description "
                              f"{config!r:.80}; expected a dict whose 'type' is one of "
                              f"{sorted(LAYERS)}; a layer of your own must be registered with "
                              f"gpunet.register_layer before loading")
    count["layers"] += 1
    if count["layers"] > limits.max_layers:
        raise CheckpointError(f"{path}: the architecture has more than {limits.max_layers:,} "
                              f"layers (LoadLimits.max_layers)")
    if config["type"] == "Sequential":
        layers = config.get("layers")
        if not isinstance(layers, list):
            raise CheckpointError(f"{path}: cannot rebuild the model: a Sequential "
                                  f"description needs a 'layers' list, got {layers!r:.40}")
        for i, layer in enumerate(layers):
            _walk(layer, f"{prefix}{i}.", shapes, count, path, limits)
    elif config["type"] == "Stack":
        _walk_stack(config, prefix, shapes, count, path, limits)
    elif config["type"] in ("Linear", "StackedLinear"):  # the layers with parameters
        models = (_size(config, "models", path),) if config["type"] == "StackedLinear" else ()
        n_in, n_out = _size(config, "in_features", path), _size(config, "out_features", path)
        bias = config.get("bias", True)
        if not isinstance(bias, bool):
            raise CheckpointError(f"{path}: cannot rebuild the model: Linear needs bias as "
                                  f"true or false, got {bias!r:.40}")
        count["parameters"] += (n_out * n_in + (n_out if bias else 0)) * math.prod(models)
        if count["parameters"] > limits.max_parameters:
            raise CheckpointError(
                f"{path}: the architecture declares more than {limits.max_parameters:,} "
                f"parameters (at Linear({n_in}, {n_out}), layer {prefix or 'at the top'}), "
                f"over the limit LoadLimits.max_parameters; if you trust the file, raise it "
                f"(gpunet eval/train --max-params N, or gpunet.load(..., "
                f"limits=LoadLimits(max_parameters=N)))")
        shapes[prefix + "weight"] = models + (n_out, n_in)
        if bias:
            shapes[prefix + "bias"] = models + (n_out,)
    elif not is_builtin(config["type"]):
        _registered(config, prefix, shapes, count, path, limits)


def _walk_stack(config, prefix, shapes, count, path, limits):
    """A stack (``nn/stack.py``): its architecture's parameters, each with a leading axis of
    ``models``; they count ``models`` times toward the limit."""
    models = _size(config, "models", path)
    architecture = config.get("model")
    if not isinstance(architecture, dict) or architecture.get("type") != "Sequential":
        raise CheckpointError(f"{path}: cannot rebuild the model: a Stack description needs "
                              f"a Sequential 'model', got {architecture!r:.80}")
    one = {"layers": count["layers"], "parameters": 0}
    inner: dict = {}
    _walk(architecture, "", inner, one, path, limits)
    count["layers"] = one["layers"]
    count["parameters"] += one["parameters"] * models
    if count["parameters"] > limits.max_parameters:
        raise CheckpointError(f"{path}: the stack of {models:,} models declares more than "
                              f"{limits.max_parameters:,} parameters "
                              f"(LoadLimits.max_parameters)")
    shapes.update({prefix + name: (models,) + shape for name, shape in inner.items()})


def _registered(config, prefix, shapes, count, path, limits):
    """A layer registered by the user: its own code decides its parameters, so it is built
    (on the CPU) to learn their names and shapes; its parameters count toward the limit."""
    try:
        module = from_config(config)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model: {exc}") from exc
    for name, p in module.named_parameters():
        count["parameters"] += p.data.size
        if count["parameters"] > limits.max_parameters:
            raise CheckpointError(f"{path}: the architecture declares more than "
                                  f"{limits.max_parameters:,} parameters (at {config['type']}, "
                                  f"layer {prefix or 'at the top'}; LoadLimits.max_parameters)")
        shapes[prefix + name] = tuple(p.data.shape)


_GROUPS = {PARAM: "weights", BEST: "best-epoch weights", BUFFER: "optimizer buffers"}


def _mismatch(reader, prefix, detail):
    return CheckpointError(f"{reader.path}: the {_GROUPS[prefix]} do not fit the "
                           f"architecture: {detail}")


def _check_group(reader, prefix, shapes, dtype, required):
    """Entries ``prefix + name``: exactly the names of ``shapes`` (or none, unless
    ``required``), each of its shape and ``dtype``."""
    names = {k[len(prefix):] for k in reader.entries if k.startswith(prefix)}
    if not names and not required:
        return
    if names != set(shapes):
        raise _mismatch(reader, prefix, f"missing {sorted(set(shapes) - names)}, "
                                        f"unexpected {sorted(names - set(shapes))[:5]}")
    for name, shape in shapes.items():
        got_shape, got_dtype = reader.header(prefix + name)
        if got_shape != shape or got_dtype != dtype:
            raise _mismatch(reader, prefix, f"{name!r} must have shape {shape} of {dtype}, "
                                            f"the file has shape {got_shape} of {got_dtype}")


def check_entries(reader, shapes, dtype):
    """Check every entry of ``reader`` against the architecture's ``shapes`` and ``dtype``
    by its header alone: weights, best weights, optimizer buffers; nothing else allowed."""
    known = set(SCALAR_ENTRIES)
    arrays = [k for k in reader.entries if k not in known]
    stray = [k for k in arrays if not k.startswith((PARAM, BEST, BUFFER))]
    if stray:
        raise CheckpointError(f"{reader.path} holds entries a gpunet checkpoint does not "
                              f"have: {sorted(stray)[:5]}")
    _check_group(reader, PARAM, shapes, dtype, required=True)
    _check_group(reader, BEST, shapes, dtype, required=False)
    buffers = [k for k in arrays if k.startswith(BUFFER)]
    if len(buffers) > MAX_BUFFERS:
        raise CheckpointError(f"{reader.path} holds {len(buffers)} optimizer buffers; an "
                              f"optimizer keeps at most {MAX_BUFFERS}")
    total = sum(math.prod(shape) for shape in shapes.values())
    for key in buffers:  # flat over the optimizer's parameters: at most all of the model's
        shape, got = reader.header(key)
        if len(shape) != 1 or shape[0] > total or got != dtype:
            raise _mismatch(reader, BUFFER, f"{key[len(BUFFER):]!r} must be flat, of at "
                                            f"most {total} {dtype} values, the file has "
                                            f"shape {shape} of {got}")
