"""Argument checks in one place (NumPy only): each returns the value, normalised, or raises
:class:`CheckError` naming the argument, what was expected and what came. The CLI's argparse
types are derived from the same checks (:func:`argparse_type`), so a rule is written once.
"""
from __future__ import annotations

import argparse
import difflib
import math

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class CheckError(ValueError):
    """A bad argument: ``expected`` says what would have been accepted."""

    def __init__(self, name, expected, value):
        super().__init__(f"{name} must be {expected}, got {value!r}")
        self.expected = expected


def _is_real(value) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(
        value, (int, float, np.integer, np.floating))


def check_int(value, name, minimum=None) -> int:
    """``value`` as an int (not a bool or a float), at least ``minimum`` when given."""
    expected = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(
        minimum, f"an integer >= {minimum}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or (minimum is not None and value < minimum):
        raise CheckError(name, expected, value)
    return int(value)


def check_positive_int(value, name) -> int:
    """``value`` as an int >= 1."""
    return check_int(value, name, 1)


def check_number(value, name, low=None, high=None, *, low_open=False, high_open=False) -> float:
    """``value`` as a finite float within the bounds given (closed unless ``*_open``)."""
    if low is not None and high is not None:
        bounds = f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        bounds = f" {'>' if low_open else '>='} {low}"
    elif high is not None:
        bounds = f" {'<' if high_open else '<='} {high}"
    else:
        bounds = ""
    ok = _is_real(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise CheckError(name, f"a finite number{bounds}", value)
    return float(value)


def check_per_model(value, name, models, **bounds):
    """A hyperparameter of ``models`` models (None: not a stack): a scalar, checked by
    :func:`check_number` with ``bounds`` and returned as a float (the same for every model),
    or, for a stack, ``models`` such numbers (a list, tuple or 1-D array), returned as a
    tuple of floats."""
    if np.ndim(value) == 0 or isinstance(value, (str, bytes)):
        return check_number(value.item() if isinstance(value, np.ndarray) else value, name,
                            **bounds)
    if models is None:
        raise CheckError(name, "a number (one value per model is for the parameters of a "
                         "stack, gn.stack(model, n))", value)
    values = list(np.asarray(value, dtype=object).reshape(-1)) if np.ndim(value) == 1 else None
    if values is None or len(values) != models:
        raise CheckError(name, f"a number or {models} numbers, one per model of the stack",
                         value)
    return tuple(check_number(v, f"{name}[{i}]", **bounds) for i, v in enumerate(values))


def check_fraction(value, name) -> float:
    """``value`` as a float in [0, 1)."""
    return check_number(value, name, 0, 1, high_open=True)


def check_dtype(dtype) -> np.dtype:
    """``dtype`` as a NumPy dtype, which must be float32 or float64 (TypeError otherwise)."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def argparse_type(check, parse=float, **bounds):
    """An argparse ``type`` from a check: the text is parsed with ``parse``, then checked;
    a bad value reads "expected <what the check expects>, got '<text>'"."""
    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            value = text  # not even a number: the check names what it expected
        try:
            return check(value, "the value", **bounds)
        except CheckError as exc:
            raise argparse.ArgumentTypeError(f"expected {exc.expected}, got {text!r}") from None
    convert.__name__ = getattr(check, "__name__", "value")
    return convert


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser (``gpunet train``): an argument it does not know is its own
    error, after its usage (exit 2), naming the closest option it has: ``--epcohs`` reads
    "did you mean --epochs?"."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._closest(extras)}")
        return namespace, extras

    def _closest(self, extras) -> str:
        options = [o for o in self._option_string_actions if o.startswith("--")]
        for arg in extras:
            if arg.startswith("-"):
                close = difflib.get_close_matches(arg.split("=", 1)[0], options, n=1)
                if close:
                    return f"; did you mean {close[0]}?"
        return ""
