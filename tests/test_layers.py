"""Every layer: float64 gradient check, shapes, modes, and the fused Linear+ReLU path."""
import numpy as np
import pytest

import gpunet as gn


def _x(backend, rng, *shape):
    return backend.asarray(rng.standard_normal(shape), dtype=np.float64)


def _on(backend, module):
    return module.to(backend.name, dtype="float64")


@pytest.mark.parametrize("make", [
    lambda: gn.Linear(5, 4),
    lambda: gn.Linear(5, 4, bias=False),
    lambda: gn.Linear(5, 4, init="xavier"),
    gn.ReLU, gn.Sigmoid, gn.Tanh, gn.Softmax, gn.LogSoftmax,
    lambda: gn.LeakyReLU(0.1),
    lambda: gn.Dropout(0.3),
], ids=["linear", "linear-nobias", "linear-xavier", "relu", "sigmoid", "tanh", "softmax",
        "logsoftmax", "leaky-relu", "dropout"])
def test_layer_passes_gradcheck(backend, rng, make):
    layer = _on(backend, make())
    assert gn.gradcheck(layer, _x(backend, rng, 3, 5), tol=1e-6)


def test_flatten_gradcheck_and_shape(backend, rng):
    layer = _on(backend, gn.Flatten())
    x = _x(backend, rng, 3, 2, 4)
    assert layer(x).shape == (3, 8)
    assert gn.gradcheck(layer, x)


def test_mlp_with_fused_pairs_passes_gradcheck(backend, rng):
    model = gn.Sequential(gn.Flatten(), gn.Linear(6, 7), gn.ReLU(), gn.Linear(7, 5), gn.ReLU(),
                          gn.Linear(5, 3), dtype="float64").to(backend.name)
    assert sum(type(s).__name__ == "_LinearReLU" for s in model._plan) == 2
    for p in model.parameters():  # non-zero biases: a row with every unit dead sits at no kink
        if p.data.ndim == 1:
            p.data[...] = backend.asarray(rng.uniform(0.1, 0.5, p.shape))
    assert gn.gradcheck(model, _x(backend, rng, 4, 2, 3))


def test_gradcheck_detects_a_wrong_backward(rng):
    class Doubled(gn.Tanh):
        def local_grad(self, x, y, grad, out):
            super().local_grad(x, y, grad, out)
            out *= 2

    with pytest.raises(gn.GradcheckError, match="relative error"):
        gn.gradcheck(Doubled(dtype="float64"), rng.standard_normal((3, 4)))


def test_fused_and_unfused_sequential_agree(backend, rng):
    gn.manual_seed(3)
    fused = gn.Sequential(gn.Linear(8, 6), gn.ReLU(), gn.Linear(6, 2)).to(backend.name)
    unfused = gn.Sequential(gn.Linear(8, 6), gn.Sequential(gn.ReLU()), gn.Linear(6, 2))
    unfused.to(backend.name).load_state_dict(fused.state_dict())
    x = backend.asarray(rng.standard_normal((5, 8)), dtype=np.float32)
    g = backend.asarray(rng.standard_normal((5, 2)), dtype=np.float32)
    np.testing.assert_allclose(gn.to_numpy(fused(x)), gn.to_numpy(unfused(x)), rtol=1e-5)
    np.testing.assert_allclose(gn.to_numpy(fused.backward(g)), gn.to_numpy(unfused.backward(g)),
                               rtol=1e-5, atol=1e-6)
    for a, b in zip(fused.parameters(), unfused.parameters()):
        np.testing.assert_allclose(gn.to_numpy(a.grad), gn.to_numpy(b.grad), rtol=1e-5, atol=1e-6)


def test_linear_shapes_follow_the_lecture():
    layer = gn.Linear(784, 512)
    assert layer.weight.data.shape == (512, 784) and layer.bias.data.shape == (512,)
    assert layer.weight.grad.shape == layer.weight.data.shape
    assert layer.weight.data.dtype == np.float32


def test_he_init_scale_and_xavier_bounds():
    gn.manual_seed(0)
    w = gn.Linear(1000, 400).weight.data
    assert abs(w.std() - np.sqrt(2 / 1000)) < 0.05 * np.sqrt(2 / 1000)
    limit = np.sqrt(6 / 1400)
    v = gn.Linear(1000, 400, init="xavier").weight.data
    assert np.abs(v).max() <= limit and np.abs(v).max() > 0.95 * limit


def test_parameters_in_layer_order_weight_before_bias():
    model = gn.Sequential(gn.Flatten(), gn.Linear(4, 3), gn.ReLU(), gn.Linear(3, 2))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["1.weight", "1.bias", "3.weight", "3.bias"]
    shapes = [p.shape for p in model.parameters()]
    assert shapes == [(3, 4), (3,), (2, 3), (2,)]


def test_parameters_share_one_flat_buffer():
    model = gn.Sequential(gn.Linear(4, 3), gn.ReLU(), gn.Linear(3, 2))
    params = list(model.parameters())
    flat = params[0].flat
    assert flat.data.size == sum(p.data.size for p in params)
    assert all(np.shares_memory(p.data, flat.data) for p in params)
    assert all(np.shares_memory(p.grad, flat.grad) for p in params)


def test_backward_overwrites_gradients_instead_of_accumulating(backend, rng):
    model = gn.Sequential(gn.Linear(3, 4), gn.ReLU(), gn.Linear(4, 2)).to(backend.name)
    x = backend.asarray(rng.standard_normal((5, 3)), dtype=np.float32)
    g = backend.asarray(rng.standard_normal((5, 2)), dtype=np.float32)
    model(x)
    model.backward(g)
    first = [gn.to_numpy(p.grad).copy() for p in model.parameters()]
    model(x)
    model.backward(g)
    for a, p in zip(first, model.parameters()):
        np.testing.assert_allclose(gn.to_numpy(p.grad), a, rtol=1e-6)


def test_backward_without_input_grad_matches_parameter_grads(rng):
    model = gn.Sequential(gn.Flatten(), gn.Linear(6, 4), gn.ReLU(), gn.Linear(4, 2))
    x = rng.standard_normal((3, 2, 3)).astype(np.float32)
    g = rng.standard_normal((3, 2)).astype(np.float32)
    model(x)
    dx = model.backward(g)
    assert dx.shape == x.shape
    grads = [p.grad.copy() for p in model.parameters()]
    model(x)
    assert model.backward(g, input_grad=False) is None
    for a, p in zip(grads, model.parameters()):
        np.testing.assert_allclose(p.grad, a, rtol=1e-6)


def test_dropout_train_and_eval(rng):
    gn.manual_seed(1)
    layer = gn.Dropout(0.5)
    x = np.ones((200, 50), np.float32)
    y = layer(x)
    kept = y != 0
    assert 0.4 < kept.mean() < 0.6
    np.testing.assert_allclose(y[kept], 2.0)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)) != 0, kept)
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)


def test_dropout_masks_repeat_with_the_seed():
    x = np.ones((20, 20), np.float32)
    gn.manual_seed(7)
    a = gn.Dropout(0.5)(x).copy()
    gn.manual_seed(7)
    b = gn.Dropout(0.5)(x).copy()
    np.testing.assert_array_equal(a, b)


def test_seed_makes_initialisation_reproducible():
    gn.manual_seed(11)
    a = gn.Linear(5, 5).weight.data.copy()
    gn.manual_seed(11)
    b = gn.Linear(5, 5).weight.data.copy()
    gn.manual_seed(12)
    c = gn.Linear(5, 5).weight.data.copy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_activations_extreme_inputs_stay_finite():
    x = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], np.float32)
    for layer in (gn.Sigmoid(), gn.Tanh(), gn.Softmax(), gn.LogSoftmax()):
        assert np.isfinite(layer(x)).all(), type(layer).__name__
    np.testing.assert_allclose(gn.Sigmoid()(x)[0, [0, 2, 4]], [0.0, 0.5, 1.0])


def test_state_dict_round_trip_and_copy_semantics(backend):
    model = gn.Sequential(gn.Linear(3, 4), gn.ReLU(), gn.Linear(4, 2)).to(backend.name)
    state = model.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    other = gn.Sequential(gn.Linear(3, 4), gn.ReLU(), gn.Linear(4, 2))
    other.load_state_dict(state)
    for a, b in zip(model.parameters(), other.parameters()):
        np.testing.assert_array_equal(gn.to_numpy(a.data), b.data)
    state["0.weight"][...] = 0
    assert np.abs(gn.to_numpy(model[0].weight.data)).sum() > 0


def test_from_config_rebuilds_the_architecture():
    model = gn.Sequential(gn.Flatten(), gn.Linear(4, 3, bias=False), gn.LeakyReLU(0.2),
                          gn.Dropout(0.1), gn.Linear(3, 2, init="xavier"), gn.LogSoftmax())
    clone = gn.from_config(model.config())
    assert clone.config() == model.config()
    clone.load_state_dict(model.state_dict())


def test_train_eval_propagate():
    model = gn.Sequential(gn.Linear(2, 2), gn.Dropout(0.5))
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_float64_model_casts_on_move():
    model = gn.Sequential(gn.Linear(3, 2), dtype="float64")
    assert all(p.data.dtype == np.float64 for p in model.parameters())
    model.to(dtype="float32")
    assert all(p.data.dtype == np.float32 for p in model.parameters())


def test_log_softmax_stays_finite_where_a_probability_underflows(backend):
    x = backend.asarray(np.array([[0.0, -200.0, 50.0]], np.float32))
    logp = gn.to_numpy(gn.LogSoftmax().to(backend.name)(x))
    np.testing.assert_allclose(logp, [[-50.0, -250.0, 0.0]], rtol=1e-6)
    p = gn.to_numpy(gn.Softmax().to(backend.name)(x))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
