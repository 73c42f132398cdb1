"""Every input a user can get wrong gets a clear error naming expected and actual."""
import numpy as np
import pytest

import gpunet as gn


def test_linear_rejects_wrong_width():
    with pytest.raises(ValueError, match=r"in_features=4, got shape \(2, 5\)"):
        gn.Linear(4, 3)(np.zeros((2, 5), np.float32))


def test_linear_rejects_non_2d_input_and_points_to_flatten():
    with pytest.raises(ValueError, match=r"2-D input \(batch, 784\), got shape \(2, 28, 28\).*Flatten"):
        gn.Linear(784, 3)(np.zeros((2, 28, 28), np.float32))


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="Linear.backward called before forward"):
        gn.Linear(2, 2).backward(np.zeros((1, 2), np.float32))
    model = gn.Sequential(gn.Linear(2, 3), gn.ReLU(), gn.Linear(3, 1))
    with pytest.raises(RuntimeError, match="called before forward"):
        model.backward(np.zeros((1, 1), np.float32))
    with pytest.raises(RuntimeError, match="ReLU.backward called before forward"):
        gn.ReLU().backward(np.zeros((1, 1), np.float32))


def test_backward_with_wrong_gradient_shape():
    layer = gn.Linear(2, 3)
    layer(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"gradient of shape \(4, 3\), got \(4, 2\)"):
        layer.backward(np.zeros((4, 2), np.float32))


def test_float64_input_is_cast_not_promoted():
    model = gn.Sequential(gn.Linear(3, 2))
    out = model(np.ones((2, 3), np.float64))
    assert out.dtype == np.float32


def test_integer_input_is_refused():
    with pytest.raises(TypeError, match="floating-point input of dtype float32, got uint8"):
        gn.Linear(3, 2)(np.ones((2, 3), np.uint8))


def test_non_array_input_is_refused():
    with pytest.raises(TypeError, match="got builtins.list"):
        gn.Linear(2, 2)([[1.0, 2.0]])


@pytest.mark.parametrize("args,match", [
    ((0, 3), "in_features must be a positive integer, got 0"),
    ((3, 2.5), "out_features must be a positive integer, got 2.5"),
])
def test_linear_sizes_are_validated(args, match):
    with pytest.raises(ValueError, match=match):
        gn.Linear(*args)


def test_other_constructor_arguments_are_validated():
    with pytest.raises(ValueError, match="init must be one of"):
        gn.Linear(2, 2, init="orthogonal")
    with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\), got 1"):
        gn.Dropout(1)
    with pytest.raises(ValueError, match=r"p must be a finite number in \[0, 1\), got 'a'"):
        gn.Dropout("a")
    with pytest.raises(ValueError, match=r"negative_slope must be a finite number in \[0, 1\), got -1"):
        gn.LeakyReLU(-1)
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got int32"):
        gn.Linear(2, 2, dtype=np.int32)
    with pytest.raises(TypeError, match="layer 1 is int"):
        gn.Sequential(gn.Linear(2, 2), 3)
    with pytest.raises(TypeError, match="different dtypes"):
        gn.Sequential(gn.Linear(2, 2), gn.Linear(2, 2, dtype="float64"))


def test_load_state_dict_mismatches():
    model = gn.Sequential(gn.Linear(3, 2))
    state = model.state_dict()
    with pytest.raises(KeyError, match=r"missing \['0.bias'\]"):
        model.load_state_dict({"0.weight": state["0.weight"]})
    with pytest.raises(ValueError, match=r"'0.weight': the model expects \(2, 3\), the state dict has \(3, 2\)"):
        model.load_state_dict({"0.weight": np.zeros((3, 2)), "0.bias": state["0.bias"]})


def test_load_state_dict_accepts_nested_lists():
    model = gn.Sequential(gn.Linear(2, 1))
    model.load_state_dict({"0.weight": [[1.0, 2.0]], "0.bias": [0.5]})
    np.testing.assert_array_equal(model(np.ones((1, 2), np.float32)), [[3.5]])


def test_from_config_rejects_malformed_descriptions():
    with pytest.raises(ValueError, match="needs a 'layers' list"):
        gn.from_config({"type": "Sequential"})
    with pytest.raises(ValueError, match="bad arguments in layer description"):
        gn.from_config({"type": "Linear", "in_features": 2})
    with pytest.raises(ValueError, match="unknown layer description"):
        gn.from_config({"type": "Conv2d"})


def test_gradcheck_requires_float64():
    with pytest.raises(TypeError, match="float64 module, got float32"):
        gn.gradcheck(gn.Linear(2, 2), np.zeros((1, 2)))
