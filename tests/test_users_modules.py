"""Subclassing gn.Module as PyTorch users do: registered sub-modules, errors that show the fix,
input_grad=False everywhere, activations that see their input, and the Xavier rule."""
import re
from pathlib import Path

import numpy as np
import pytest

import gpunet as gn


class NoBackward(gn.Module):
    """A PyTorch-style container: children as attributes, forward by hand, no backward."""

    def __init__(self):
        super().__init__()
        self.fc1 = gn.Linear(4, 8)
        self.act = gn.ReLU()
        self.fc2 = gn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Net(NoBackward):
    """The same with its backward written: the children in reverse."""

    def backward(self, grad, input_grad=True):
        grad = self.fc2.backward(grad)
        grad = self.act.backward(grad)
        return self.fc1.backward(grad, input_grad)


def test_attribute_submodules_are_registered_in_assignment_order():
    net = Net()
    assert [name for name, _ in net.named_parameters()] == [
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [name for name, _ in net.named_children()] == ["fc1", "act", "fc2"]
    assert set(net.state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    text = repr(net)
    assert "(fc1): Linear(in_features=4, out_features=8" in text and "(act): ReLU()" in text


def test_a_custom_container_trains(rng):
    gn.manual_seed(0)
    net = Net()
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    loss_fn = gn.CrossEntropyLoss()
    opt = gn.optim.SGD(net.parameters(), lr=0.3, momentum=0.9)
    first = float(loss_fn(net(x), y))
    for _ in range(100):
        loss_fn(net(x), y)
        net.backward(loss_fn.backward(), input_grad=False)
        opt.step()
    assert float(loss_fn(net(x), y)) < 0.5 * first


def test_reassigning_or_deleting_a_child_updates_the_registry():
    net = Net()
    net.fc1 = gn.Linear(4, 6)   # replaced in place: the order stays
    assert [name for name, _ in net.named_children()] == ["fc1", "act", "fc2"]
    net.fc2 = gn.Linear(8, 5)
    net.act = None
    assert [name for name, _ in net.named_children()] == ["fc1", "fc2"]
    del net.fc1
    assert [name for name, _ in net.named_parameters()] == ["fc2.weight", "fc2.bias"]


def test_a_module_shared_twice_is_counted_once():
    layer = gn.Linear(3, 3)
    model = gn.Sequential(layer, gn.Tanh(), layer)
    assert len(list(model.parameters())) == 2
    assert len(list(model.modules())) == 3


def test_assigning_a_layer_before_init_names_the_fix():
    class Early(gn.Module):
        def __init__(self):
            self.fc = gn.Linear(2, 2)
            super().__init__()

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first"):
        Early()


def test_a_container_without_backward_says_why_and_shows_the_fix():
    net = NoBackward()
    net(np.ones((2, 4), np.float32))
    with pytest.raises(NotImplementedError) as info:
        net.backward(np.ones((2, 3), np.float32))
    message = str(info.value)
    assert "no autograd" in message
    assert "self.fc2, self.act, self.fc1" in message
    assert "gn.Sequential" in message


def test_a_leaf_without_forward_or_backward_names_the_method():
    class Empty(gn.Module):
        pass

    with pytest.raises(NotImplementedError, match=r"Empty.forward is not defined"):
        Empty()(np.ones((1, 2), np.float32))
    with pytest.raises(NotImplementedError, match=r"Empty.backward.*README's custom-layer"):
        Empty().backward(np.ones((1, 2), np.float32))


def test_no_bare_not_implemented_error_in_the_package():
    root = Path(gn.__file__).parent
    sources = list(root.rglob("*.py"))
    bare = [f"{path.relative_to(root)}:{i}" for path in sources
            for i, line in enumerate(path.read_text().splitlines(), 1)
            if re.search(r"raise NotImplementedError(\(\))?\s*(#.*)?$", line)]
    assert not bare, f"bare NotImplementedError at {bare}"


@pytest.mark.parametrize("make", [gn.Flatten, gn.ReLU, gn.Tanh, gn.Sigmoid, gn.Softmax,
                                  lambda: gn.Dropout(0.5), lambda: gn.Sequential(gn.Tanh())],
                         ids=["flatten", "relu", "tanh", "sigmoid", "softmax", "dropout",
                              "sequential-no-params"])
def test_parameter_free_layers_honour_input_grad_false(make, rng):
    layer = make()
    x = rng.standard_normal((3, 4)).astype(np.float32)
    out = layer(x)
    assert layer.backward(np.ones_like(out), input_grad=False) is None
    assert layer.backward(np.ones_like(out)).shape == x.shape


def test_activations_see_their_input(rng):
    class Swish(gn.Activation):
        """x * sigmoid(x): its local gradient needs the input, not only the output."""

        def activate(self, x, out):
            xp = self.backend.xp
            out[...] = x / (1 + xp.exp(-x))

        def local_grad(self, x, y, grad, out):
            xp = self.backend.xp
            s = 1 / (1 + xp.exp(-x))
            out[...] = grad * (s + x * s * (1 - s))

    assert gn.gradcheck(Swish(dtype="float64"), rng.standard_normal((4, 5)))


def test_one_sample_without_a_batch_axis_names_x_none():
    model = gn.Sequential(gn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"one sample needs a batch axis: model\(x\[None\]\)"):
        model(np.ones(3, np.float32))
    images = gn.Sequential(gn.Flatten(), gn.Linear(784, 10))
    with pytest.raises(ValueError, match=r"got shape \(28, 28\); one sample needs a batch axis"):
        images(np.ones((28, 28), np.float32))


def _spread(weight):
    return float(np.abs(weight.data).max())


@pytest.mark.parametrize("after", [gn.Tanh, gn.Sigmoid])
def test_linear_before_tanh_or_sigmoid_defaults_to_xavier(after):
    gn.manual_seed(0)
    model = gn.Sequential(gn.Linear(400, 300), after(), gn.Linear(300, 10))
    assert model[0].init == "xavier" and model[2].init == "kaiming"
    limit = np.sqrt(6 / (400 + 300))
    assert _spread(model[0].weight) <= limit          # uniform within Xavier's bound
    assert _spread(model[0].weight) > 0.99 * limit
    assert gn.from_config(model.config())[0].init == "xavier"


def test_an_explicit_init_is_kept_and_relu_keeps_kaiming():
    model = gn.Sequential(gn.Linear(400, 300, init="kaiming"), gn.Tanh(),
                          gn.Linear(300, 20), gn.ReLU())
    assert model[0].init == "kaiming" and model[2].init == "kaiming"
    assert _spread(model[0].weight) > np.sqrt(6 / 700)  # a normal draw reaches past it
