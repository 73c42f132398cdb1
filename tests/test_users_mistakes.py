"""Mistakes that used to pass silently or confuse: each now gets an error or a warning that
names the fix."""
import numpy as np
import pytest

import gpunet as gn


def _model():
    return gn.Sequential(gn.Linear(4, 8), gn.ReLU(), gn.Linear(8, 3))


def test_sgd_given_the_model_itself_names_parameters():
    with pytest.raises(TypeError, match=r"got the model itself \(Sequential\); pass "
                                        r"model.parameters\(\)"):
        gn.optim.SGD(_model(), lr=0.1)


def test_an_optimizer_given_arrays_names_what_it_expects():
    with pytest.raises(TypeError, match=r"expects gpunet Parameters .* got ndarray at position 0"):
        gn.optim.Adam([np.zeros(3)])
    with pytest.raises(TypeError, match=r"expects an iterable of gpunet Parameters"):
        gn.optim.Adam(3)


def test_an_empty_parameter_list_says_where_layers_are_found():
    model = _model()
    params = model.parameters()
    list(params)   # used up
    with pytest.raises(ValueError, match=r"assigned as attributes.*used up once read"):
        gn.optim.SGD(params, lr=0.1)


def test_check_holds_finds_an_optimizer_of_another_model():
    old, new = _model(), _model()
    opt = gn.optim.SGD(old.parameters(), lr=0.1)
    opt.check_holds(old)
    with pytest.raises(ValueError, match=r"none of the parameters it holds belongs to the "
                                         r"model.*SGD\(model.parameters\(\)"):
        opt.check_holds(new)
    partial = gn.optim.SGD(list(new.parameters())[:2], lr=0.1)  # training a part is fine
    partial.check_holds(new)
