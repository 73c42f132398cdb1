"""Parameters keep their link to the flat buffer the optimizer trains, whatever the user
writes: ``p.grad = a`` and ``p.data = a`` copy into it (checked), in-place writes work as
before, and a parameter or layer replaced after the optimizer was created makes ``step``
raise instead of leaving a weight silently frozen, in the eager loop and the static step."""
import numpy as np
import pytest

import gpunet as gn


def _mlp(backend):
    gn.manual_seed(0)
    return gn.Sequential(gn.Linear(4, 8), gn.ReLU(), gn.Linear(8, 3)).to(backend.name)


def _data(backend, n=32):
    rng = np.random.default_rng(0)
    X = backend.asarray(rng.standard_normal((n, 4)), dtype=np.float32)
    y = backend.asarray(rng.integers(0, 3, n))
    return X, y


def _fit(model, opt, X, y, graph="auto", **kwargs):
    return gn.fit(model, gn.CrossEntropyLoss(), opt, (X, y), epochs=2, batch_size=8,
                  progress=False, verbose=False, graph=graph, **kwargs)


def _backward(model, X, y):
    loss_fn = gn.CrossEntropyLoss()
    loss_fn(model(X), y)
    model.backward(loss_fn.backward())


def test_assigned_zero_gradient_is_the_one_the_optimizer_uses(backend):
    model = _mlp(backend)
    opt = gn.optim.SGD(model.parameters(), lr=0.5)
    _backward(model, *_data(backend))
    before = model.state_dict()
    for p in model.parameters():
        p.grad = p.grad * 0
    opt.step()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_in_place_gradient_scaling_still_reaches_the_optimizer(backend):
    model = _mlp(backend)
    opt = gn.optim.SGD(model.parameters(), lr=0.5)
    _backward(model, *_data(backend))
    before = model.state_dict()
    grads = [gn.to_numpy(p.grad).copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad *= 0.5
    opt.step()
    for (name, value), g in zip(model.state_dict().items(), grads):
        np.testing.assert_allclose(value, before[name] - 0.25 * g, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("graph", ["auto", "off"])
def test_assigned_weights_are_trained_by_fit(backend, graph):
    model = _mlp(backend)
    opt = gn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    layer = model[0]
    layer.weight.data = layer.weight.data * 0.5
    halved = gn.to_numpy(layer.weight.data).copy()
    assert layer.weight.data.base is opt.flat.data      # still a view of the trained buffer
    np.testing.assert_array_equal(
        gn.to_numpy(opt.flat.data[:halved.size]).reshape(halved.shape), halved)
    _fit(model, opt, *_data(backend), graph=graph)
    assert not np.array_equal(gn.to_numpy(layer.weight.data), halved)


class Scale(gn.Module):
    """y = x * scale (per feature), its gradient assigned with ``=`` as a new user would."""

    def __init__(self, features):
        super().__init__()
        self.scale = gn.Parameter(np.ones(features, np.float32))

    def forward(self, x):
        self.x = x
        return x * self.scale.data

    def backward(self, grad, input_grad=True):
        self.scale.grad = (grad * self.x).sum(0)
        return grad * self.scale.data if input_grad else None


class ScaledNet(gn.Module):
    def __init__(self):
        super().__init__()
        self.scale = Scale(4)
        self.out = gn.Linear(4, 3)

    def forward(self, x):
        return self.out(self.scale(x))

    def backward(self, grad, input_grad=True):
        return self.scale.backward(self.out.backward(grad), input_grad)


def test_a_custom_layer_that_assigns_its_gradient_trains(backend):
    gn.manual_seed(0)
    net = ScaledNet().to(backend.name)
    opt = gn.optim.SGD(net.parameters(), lr=0.2)
    X, y = _data(backend)
    _backward(net, X, y)
    expected = np.ones(4, np.float32) - 0.2 * gn.to_numpy(net.scale.scale.grad)
    opt.step()
    np.testing.assert_allclose(gn.to_numpy(net.scale.scale.data), expected, rtol=1e-6)
    assert gn.gradcheck(ScaledNet().to(dtype="float64"), np.random.randn(5, 4))
    history = gn.fit(net, gn.CrossEntropyLoss(), opt, (X, y), epochs=5, batch_size=8,
                     progress=False, verbose=False)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert not np.allclose(gn.to_numpy(net.scale.scale.data), expected)


def test_assignments_that_do_not_fit_name_what_is_expected(backend):
    p = _mlp(backend)[0].weight
    xp = backend.xp
    with pytest.raises(ValueError, match=r"Parameter.data expects an array of shape \(8, 4\) "
                                         r"and dtype float32 on the \w+, got shape \(4, 8\)"):
        p.data = p.data.T.copy()
    with pytest.raises(TypeError, match=r"Parameter.grad expects .* dtype float32 .*, got "
                                        r"dtype float64; convert it: value.astype\('float32'\)"):
        p.grad = xp.zeros((8, 4))
    with pytest.raises(TypeError, match=r"cannot be set to None.*p.grad\[...\] = 0"):
        p.grad = None
    with pytest.raises(TypeError, match=r"got builtins.float; to fill it with one value: "
                                        r"p.data\[...\] = value"):
        p.data = 0.5
    if backend.name == "gpu":
        with pytest.raises(TypeError, match=r"on the gpu, got numpy.ndarray; convert it "
                                            r"first: cupy.asarray\(a\)"):
            p.data = np.zeros((8, 4), np.float32)


def test_square_transposed_self_assignment_copies_safely(backend):
    p = gn.Parameter(backend.asarray(np.arange(9, dtype=np.float32).reshape(3, 3)))
    p.data = p.data.T
    np.testing.assert_array_equal(gn.to_numpy(p.data), np.arange(9).reshape(3, 3).T)


def test_a_replaced_parameter_makes_step_raise_naming_it(backend):
    model = _mlp(backend)
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    model[2].bias = gn.Parameter(backend.xp.zeros(3, dtype=np.float32))
    X, y = _data(backend)
    _backward(model, X, y)
    with pytest.raises(RuntimeError, match=r"Linear.bias \(holding Parameter\(shape=\(3,\), "
                                           r"dtype=float32\)\) was replaced by a new "
                                           r"Parameter.*create it again from "
                                           r"model.parameters\(\)"):
        opt.step()
    with pytest.raises(RuntimeError, match="Linear.bias"):
        _fit(model, opt, X, y)
    opt = gn.optim.SGD(model.parameters(), lr=0.1)   # the fix the message names
    _fit(model, opt, X, y)
    assert np.any(gn.to_numpy(model[2].bias.data) != 0)


@pytest.mark.parametrize("graph", ["auto", "off"])
def test_a_layer_replaced_between_epochs_stops_fit_at_the_next_step(backend, graph):
    gn.manual_seed(0)
    net = ScaledNet().to(backend.name)
    opt = gn.optim.SGD(net.parameters(), lr=0.1)

    def swap(record):
        net.out = gn.Linear(4, 3).to(backend.name)

    with pytest.raises(RuntimeError, match=r"ScaledNet.out \(holding Parameter\(shape=\(3, 4\)"
                                           r".*was replaced by a new Linear"):
        _fit(net, opt, *_data(backend), graph=graph, on_epoch_end=swap)


def test_replacing_a_layer_of_a_sequential_model_inside_the_static_step(backend):
    model = _mlp(backend)
    opt = gn.optim.SGD(model.parameters(), lr=0.1)

    def retie(record):
        model[0].weight = gn.Parameter(model[0].weight.data.copy())

    with pytest.raises(RuntimeError, match=r"Linear.weight \(holding .*\) was replaced"):
        _fit(model, opt, *_data(backend), graph="auto", on_epoch_end=retie)


def test_deleting_a_parameter_after_the_optimizer_is_noted(backend):
    net = ScaledNet().to(backend.name)
    opt = gn.optim.SGD(net.parameters(), lr=0.1)
    del net.out.bias
    with pytest.raises(RuntimeError, match=r"Linear.bias \(holding .*\) was deleted"):
        opt.step()


def test_assignments_before_any_optimizer_are_packed_by_the_next(backend):
    model = _mlp(backend)
    model[2].bias = gn.Parameter(backend.xp.ones(3, dtype=np.float32))
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    assert model[2].bias.flat is opt.flat
    _fit(model, opt, *_data(backend))
    assert np.any(gn.to_numpy(model[2].bias.data) != 1)


def test_a_parameter_put_back_is_trained_by_the_next_optimizer(backend):
    model = _mlp(backend)
    kept = model[0].weight
    model[0].weight = gn.Parameter(kept.data.copy())
    model[0].weight = kept                 # the model is whole again: its buffer serves
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    assert opt.flat is kept.flat
    _backward(model, *_data(backend))
    opt.step()


def test_parameter_counts_the_torch_way():
    model = gn.Sequential(gn.Linear(784, 512), gn.ReLU(), gn.Linear(512, 10))
    assert sum(p.numel() for p in model.parameters()) == 784 * 512 + 512 + 512 * 10 + 10
    weight = model[0].weight
    assert weight.shape == (512, 784) and weight.size() == (512, 784)
    assert weight.size(0) == 512 and weight.size(-1) == 784
