"""The one home of argument checks, and the argparse types derived from it."""
import argparse

import numpy as np
import pytest

from gpunet import checks


@pytest.mark.parametrize("value,minimum,expected", [
    (True, None, "an integer"), (2.0, None, "an integer"), ("3", 0, "a non-negative integer"),
    (0, 1, "a positive integer"), (1, 2, "an integer >= 2"), (np.bool_(True), 0, "a non-negative integer"),
])
def test_check_int_names_what_it_expected(value, minimum, expected):
    with pytest.raises(checks.CheckError, match=f"n must be {expected}.*, got {value!r}"):
        checks.check_int(value, "n", minimum)


def test_check_int_accepts_numpy_integers_and_returns_int():
    assert checks.check_int(np.int64(5), "n", 1) == 5 and type(checks.check_int(np.int8(5), "n")) is int


@pytest.mark.parametrize("value,bounds,expected", [
    (float("nan"), {}, "a finite number, got nan"),
    (float("inf"), {"low": 0}, "a finite number >= 0, got inf"),
    (0, {"low": 0, "low_open": True}, "a finite number > 0, got 0"),
    (1.0, {"low": 0, "high": 1, "high_open": True}, r"a finite number in \[0, 1\), got 1.0"),
    (0, {"low": 0, "high": 1, "low_open": True}, r"a finite number in \(0, 1\], got 0"),
    (2, {"high": 1}, "a finite number <= 1, got 2"),
    (False, {}, "a finite number, got False"), ("0.5", {}, "a finite number, got '0.5'"),
])
def test_check_number_names_the_bounds(value, bounds, expected):
    with pytest.raises(checks.CheckError, match=f"x must be {expected}"):
        checks.check_number(value, "x", **bounds)


def test_bounds_themselves_pass():
    assert checks.check_number(0, "x", 0, 1, high_open=True) == 0.0
    assert checks.check_number(1, "x", 0, 1) == 1.0
    assert checks.check_fraction(0.5, "p") == 0.5


def test_check_dtype():
    assert checks.check_dtype("float64") == np.float64
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        checks.check_dtype(np.int64)


def test_argparse_type_uses_the_same_rule_and_words():
    positive = checks.argparse_type(checks.check_int, int, minimum=1)
    assert positive("3") == 3
    for text in ("0", "2.5", "x"):
        with pytest.raises(argparse.ArgumentTypeError,
                           match=f"expected a positive integer, got '{text}'"):
            positive(text)
    fraction = checks.argparse_type(checks.check_number, low=0, high=1, high_open=True)
    assert fraction("0.25") == 0.25
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected a finite number in \[0, 1\), got 'nan'"):
        fraction("nan")
