"""An array that a public call hands to the user is the user's: later calls never overwrite
it. Buffer reuse stays inside (the layers of a model, fit, evaluate, predict)."""
import numpy as np
import pytest

import gpunet as gn
from gpunet.nn.boundary import inside


@pytest.fixture
def model(backend):
    gn.manual_seed(0)
    return gn.Sequential(gn.Flatten(), gn.Linear(12, 16), gn.ReLU(), gn.Linear(16, 8),
                         gn.Tanh(), gn.Linear(8, 3)).to(backend.name)


def _data(backend, rng, n=10):
    x = backend.asarray(rng.standard_normal((n, 3, 4)), dtype=np.float32)
    y = backend.asarray(rng.integers(0, 3, n))
    return x, y


def test_model_calls_return_new_arrays(backend, model, rng):
    x, _ = _data(backend, rng)
    first = model(x)
    kept = gn.to_numpy(first).copy()
    second = model(x * 2)
    assert second is not first
    np.testing.assert_array_equal(gn.to_numpy(first), kept)


def test_outputs_collected_over_a_loader_are_distinct(backend, model, rng):
    x, y = _data(backend, rng, 12)
    loader = gn.DataLoader(x, y, batch_size=4, shuffle=False, device=backend.name)
    outs = [model(xb) for xb, _ in loader]
    assert len({id(o) for o in outs}) == 3
    np.testing.assert_allclose(gn.to_numpy(backend.xp.concatenate(outs)),
                               gn.to_numpy(model(x)), rtol=1e-5, atol=1e-6)  # float32 GEMMs


def test_evaluate_and_predict_leave_earlier_outputs_alone(backend, model, rng):
    x, y = _data(backend, rng)
    out = model(x)
    kept = gn.to_numpy(out).copy()
    gn.evaluate(model, x, y, gn.CrossEntropyLoss(), batch_size=4)
    predicted = gn.predict(model, x)
    gn.predict(model, x * 3)
    np.testing.assert_array_equal(gn.to_numpy(out), kept)
    np.testing.assert_allclose(gn.to_numpy(predicted), kept, rtol=1e-6)


def test_loss_and_model_gradients_are_the_callers(backend, model, rng):
    x, y = _data(backend, rng)
    loss_fn = gn.CrossEntropyLoss()
    loss_fn(model(x), y)
    g_out = loss_fn.backward()
    g_in = model.backward(g_out)
    kept_out, kept_in = gn.to_numpy(g_out).copy(), gn.to_numpy(g_in).copy()
    loss_fn(model(x * 2), y)
    assert loss_fn.backward() is not g_out
    assert model.backward(loss_fn.backward()) is not g_in
    np.testing.assert_array_equal(gn.to_numpy(g_out), kept_out)
    np.testing.assert_array_equal(gn.to_numpy(g_in), kept_in)


def test_a_single_layer_called_by_the_user_returns_its_own_array(backend, rng):
    layer = gn.Tanh().to(backend.name)
    x = backend.asarray(rng.standard_normal((2, 3)), dtype=np.float32)
    a, b = layer(x), layer(x + 1)
    assert not np.array_equal(gn.to_numpy(a), gn.to_numpy(b))
    grad = backend.xp.ones_like(x)
    ga = layer.backward(grad)
    assert layer.backward(grad) is not ga


def test_reuse_stays_inside_the_library(backend, model, rng):
    x, y = _data(backend, rng)
    loss_fn = gn.CrossEntropyLoss()
    with inside():  # as fit, evaluate and predict run: the buffers themselves, no copies
        out = model(x)
        assert model(x) is out
        loss_fn(out, y)
        assert loss_fn.backward() is loss_fn.backward()
    out = model(x)
    linear, tanh, last = model[3], model[4], model[5]
    assert tanh._x is linear._workspace.get("out", (len(x), 8), linear.dtype)  # handed on
    assert out is not last._workspace.get("out", (len(x), 3), last.dtype)      # copied out
