"""The layer registry: the layer types a saved architecture may name, and how to rebuild them.

A module's ``config()`` is ``{"type": its class name, **constructor keywords}``;
:func:`from_config` looks the type up in :data:`LAYERS` and calls the class's ``from_config``
classmethod (by default ``cls(**keywords)``). The built-in layers register themselves; register
your own with :func:`register_layer`. :func:`check_rebuildable` runs at save time, so a layer
that ``gpunet.load`` could not rebuild fails when the checkpoint is written, not when it is read.
"""
from __future__ import annotations

import inspect

#: Registered layer classes by name (the ``type`` of their ``config()``).
LAYERS: dict = {}
_BUILTIN: set = set()


def _register(cls, builtin: bool):
    from .module import Module

    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise TypeError(f"register_layer expects a gpunet.Module subclass, got {cls!r}")
    name = cls.__name__
    old = LAYERS.get(name)
    if old is not None and old is not cls:
        if name in _BUILTIN:
            raise ValueError(f"{name!r} is the name of a built-in layer; give your class "
                             f"another name")
        if (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"a layer named {name!r} is already registered "
                             f"({old.__module__}.{old.__qualname__}); give "
                             f"{cls.__module__}.{cls.__qualname__} another name")
        # the same class defined again (a re-run notebook cell): the new one replaces it
    LAYERS[name] = cls
    if builtin:
        _BUILTIN.add(name)
    return cls


def is_builtin(name) -> bool:
    """Whether ``name`` is one of gpunet's own layer types."""
    return name in _BUILTIN


def register_layer(cls):
    """Register a :class:`~gpunet.Module` subclass so that models holding it can be saved
    with ``gpunet.save`` and rebuilt by ``gpunet.load``; returns the class (use it as a
    decorator, ``@gn.register_layer``).

    The layer's ``config()`` must return ``{"type": ClassName, **kwargs}`` such that
    ``ClassName(**kwargs)`` builds the same layer (the default, ``{"type": ClassName}``, suits
    a layer whose constructor needs no arguments); a layer whose description is more than
    constructor keywords overrides the classmethod ``from_config(kwargs)``. Registering a
    class defined again under the same name (a re-run notebook cell) replaces the old one.
    """
    return _register(cls, builtin=False)


def from_config(config: dict):
    """Rebuild a module (freshly initialised) from :meth:`Module.config` output."""
    if not isinstance(config, dict) or config.get("type") not in LAYERS:
        raise ValueError(f"unknown layer description {config!r}; expected a dict whose "
                         f"'type' is one of {sorted(LAYERS)} (register your own layers with "
                         f"gpunet.register_layer)")
    kwargs = {k: v for k, v in config.items() if k != "type"}
    try:
        return LAYERS[config["type"]].from_config(kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments in layer description {config!r}: {exc}") from exc


def check_rebuildable(model) -> None:
    """Raise unless :func:`from_config` can rebuild every module of ``model``: each one's
    class registered under the ``type`` its ``config()`` names, and that class's constructor
    accepting the other keywords. TypeError for an unregistered class, ValueError for a
    config its class cannot take."""
    from .module import Module

    for path, module in model.named_modules():
        cls = type(module)
        where = f"{cls.__name__} (at {path})" if path else cls.__name__
        config = module.config()
        name = config.get("type") if isinstance(config, dict) else None
        if name not in LAYERS or LAYERS[name] is not cls:
            named = (f"its config() names {name!r}, which rebuilds "
                     f"{LAYERS[name].__name__}, not {cls.__name__}" if name in LAYERS
                     else "it is not registered")
            raise TypeError(
                f"cannot save {where}: gpunet.load could not rebuild it, as {named}. "
                f"Register the class with gpunet.register_layer({cls.__name__}) (or the "
                f"decorator @gpunet.register_layer), with config() returning "
                f"{{'type': {cls.__name__!r}, **constructor keywords}}")
        if getattr(cls.from_config, "__func__", None) is not vars(Module)["from_config"].__func__:
            continue  # the class rebuilds itself from its own description
        kwargs = {k: v for k, v in config.items() if k != "type"}
        try:
            inspect.signature(cls).bind(**kwargs)
        except TypeError as exc:
            raise ValueError(
                f"cannot save {where}: its config() returns {config!r}, which "
                f"{cls.__name__}(...) does not accept ({exc}); config() must return the "
                f"constructor's keyword arguments (see gpunet.register_layer)") from None
