"""A user's own layer: registered, saved, loaded and gradient-checked; a layer that cannot be
rebuilt fails when it is saved, not when it is loaded."""
import numpy as np
import pytest

import gpunet as gn
from gpunet.nn.registry import LAYERS, is_builtin


@pytest.fixture(autouse=True)
def registry():
    """Each test starts with the built-in layers only (the README's examples register a Swish
    of their own); its registrations are undone afterwards."""
    saved = dict(LAYERS)
    for name in [name for name in LAYERS if not is_builtin(name)]:
        del LAYERS[name]
    yield
    LAYERS.clear()
    LAYERS.update(saved)


class Swish(gn.Module):
    """``x * sigmoid(beta x)``, written as the README's recipe writes it."""

    def __init__(self, beta=1.0, dtype="float32"):
        super().__init__(dtype)
        self.beta = float(beta)

    def config(self):
        return {**super().config(), "beta": self.beta}

    def forward(self, x):
        xp = self.backend.xp
        self.x = x
        self.s = 1 / (1 + xp.exp(-self.beta * x))
        return x * self.s

    def backward(self, grad, input_grad=True):
        if not input_grad:
            return None
        s = self.s
        return grad * (s + self.beta * self.x * s * (1 - s))


class Scale(gn.Module):
    """A layer with a parameter of its own: ``x * w`` per feature."""

    def __init__(self, features):
        super().__init__()
        self.features = features
        self.w = gn.Parameter(np.ones(features, np.float32))

    def config(self):
        return {**super().config(), "features": self.features}

    def forward(self, x):
        self.x = x
        return x * self.w.data

    def backward(self, grad, input_grad=True):
        self.w.grad[...] = (grad * self.x).sum(axis=0)
        return grad * self.w.data if input_grad else None


def test_a_registered_custom_layer_saves_and_loads(tmp_path, rng):
    gn.register_layer(Swish)
    gn.register_layer(Scale)
    gn.manual_seed(0)
    model = gn.Sequential(gn.Linear(4, 6), Swish(beta=1.5), Scale(6), gn.Linear(6, 2))
    model[2].w.data[...] = rng.uniform(0.5, 2, 6)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    gn.save(tmp_path / "m.npz", model)
    loaded = gn.load(tmp_path / "m.npz").model
    assert isinstance(loaded[1], Swish) and loaded[1].beta == 1.5
    assert sorted(loaded.state_dict()) == ["0.bias", "0.weight", "2.w", "3.bias", "3.weight"]
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)


def test_the_decorator_form_returns_the_class():
    @gn.register_layer
    class Cube(gn.Module):
        def forward(self, x):
            self.x = x
            return x ** 3

        def backward(self, grad, input_grad=True):
            return 3 * self.x ** 2 * grad

    assert LAYERS["Cube"] is Cube
    assert isinstance(gn.from_config({"type": "Cube"}), Cube)


def test_custom_layers_pass_gradcheck(rng):
    model = gn.Sequential(gn.Linear(4, 5), Swish(beta=0.7), Scale(5), dtype="float64")
    model[2].w.data[...] = rng.uniform(0.5, 2, 5)
    assert gn.gradcheck(model, rng.standard_normal((3, 4)))


def test_saving_an_unregistered_layer_fails_at_save_time(tmp_path):
    model = gn.Sequential(gn.Linear(4, 6), Swish(), gn.Linear(6, 2))
    with pytest.raises(TypeError, match=r"cannot save Swish \(at 1\).*not registered.*"
                                        r"gpunet.register_layer\(Swish\)"):
        gn.save(tmp_path / "m.npz", model)
    assert not (tmp_path / "m.npz").exists()


def test_a_config_the_constructor_cannot_take_fails_at_save_time(tmp_path):
    class NoConfig(Scale):  # the constructor needs features; config() does not give it
        def config(self):
            return {"type": "NoConfig"}

    gn.register_layer(NoConfig)
    with pytest.raises(ValueError, match=r"cannot save NoConfig.*does not accept.*features"):
        gn.save(tmp_path / "m.npz", NoConfig(3))


def test_a_subclass_of_a_builtin_layer_must_be_registered_itself(tmp_path):
    class MyLinear(gn.Linear):
        pass

    with pytest.raises(TypeError, match=r"cannot save MyLinear: .*not registered"):
        gn.save(tmp_path / "m.npz", MyLinear(2, 2))
    gn.register_layer(MyLinear)
    gn.save(tmp_path / "m.npz", MyLinear(2, 2))
    assert type(gn.load(tmp_path / "m.npz").model) is MyLinear


def test_a_config_that_builds_other_parameters_fails_at_save_time(tmp_path):
    class Lying(Scale):
        def config(self):
            return {"type": "Lying", "features": self.features + 1}

    gn.register_layer(Lying)
    with pytest.raises(ValueError, match=r"config\(\) does not rebuild its parameters"):
        gn.save(tmp_path / "m.npz", Lying(3))


def test_registering_again_replaces_a_redefined_class_but_not_a_builtin():
    gn.register_layer(Swish)
    again = type("Swish", (Swish,), {"__module__": Swish.__module__,
                                     "__qualname__": Swish.__qualname__})
    gn.register_layer(again)  # a notebook cell run twice defines the class again
    assert LAYERS["Swish"] is again
    other = type("Swish", (gn.Module,), {"__module__": "elsewhere"})
    with pytest.raises(ValueError, match="already registered"):
        gn.register_layer(other)
    with pytest.raises(ValueError, match="built-in layer"):
        gn.register_layer(type("Linear", (gn.Module,), {}))
    with pytest.raises(TypeError, match="Module subclass"):
        gn.register_layer(int)


def test_loading_a_file_that_names_an_unregistered_layer_says_how_to_register(tmp_path):
    gn.register_layer(Swish)
    gn.save(tmp_path / "m.npz", gn.Sequential(gn.Linear(2, 2), Swish()))
    del LAYERS["Swish"]
    with pytest.raises(gn.CheckpointError, match="registered with gpunet.register_layer"):
        gn.load(tmp_path / "m.npz")
