"""A stack of n models (``gn.stack``): each model computes, learns and starts exactly as the
same model alone; per-model hyperparameters; the layouts of shared and grouped inputs."""
import numpy as np
import pytest

import gpunet as gn


def _architecture(activation=gn.ReLU, dtype="float32", flatten=True):
    layers = [gn.Flatten()] if flatten else []
    layers += [gn.Linear(12, 8), gn.ReLU(), gn.Linear(8, 6), activation(), gn.Linear(6, 3)]
    return gn.Sequential(*layers, dtype=dtype)


def _alone(architecture, seed):
    gn.manual_seed(seed)
    return gn.from_config(architecture.config()).to(dtype=architecture.dtype)


def _group_of(model, n, x_shape, grouped):
    """The input row model ``model`` reads: None for a shared input, else its group."""
    return model // (n // x_shape[0]) if grouped else None


SHAPES = [((5, 3, 4), False), ((2, 5, 3, 4), True), ((4, 5, 12), True), ((1, 5, 12), True)]


@pytest.mark.parametrize("activation", [gn.ReLU, gn.Tanh])
@pytest.mark.parametrize("x_shape,grouped", SHAPES,
                         ids=["shared", "2 groups", "one per model", "one group"])
def test_each_model_computes_as_alone(activation, x_shape, grouped):
    architecture = _architecture(activation, "float64")
    stack = gn.stack(architecture, 4, seeds=[3, 4, 5, 6])
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    out = stack(x)
    grad = rng.standard_normal(out.shape)
    grad_x = stack.backward(grad)
    grads = {name: p.grad.copy() for name, p in stack.named_parameters()}
    assert out.shape == (4, 5, 3) and grad_x.shape == x.shape
    summed = np.zeros_like(x)
    for i in range(4):
        model = stack[i]  # its weights (drawn as alone: see the float32 test below)
        group = _group_of(i, 4, x_shape, grouped)
        xi = x if group is None else x[group]
        np.testing.assert_allclose(out[i], model(xi), rtol=1e-13, atol=1e-14)
        gi = model.backward(grad[i])
        for name, p in model.named_parameters():
            np.testing.assert_allclose(grads[name][i], p.grad, rtol=1e-12, atol=1e-13,
                                       err_msg=f"{name} of model {i}")
        if group is None:
            summed += gi
        else:
            summed[group] += gi
    np.testing.assert_allclose(grad_x, summed, rtol=1e-12, atol=1e-13)


def test_float32_forward_is_the_models_own_bit_for_bit():
    architecture = _architecture()
    stack = gn.stack(architecture, 3, seeds=[7, 8, 9])
    x = np.random.default_rng(1).random((10, 3, 4), dtype=np.float32)
    out = stack(x)
    for i in range(3):
        np.testing.assert_array_equal(out[i], _alone(architecture, 7 + i)(x))


def test_gradcheck_through_a_stack():
    stack = gn.stack(_architecture(gn.Tanh, "float64"), 3, seeds=[0, 1, 2])
    assert gn.gradcheck(stack, np.random.default_rng(0).random((4, 3, 4)))
    assert gn.gradcheck(stack, np.random.default_rng(1).random((3, 4, 12)))


def test_seeds_give_the_models_built_alone():
    gn.manual_seed(11)
    built = gn.Sequential(gn.Flatten(), gn.Linear(12, 8), gn.ReLU(), gn.Linear(8, 3))
    stack = gn.stack(built, 2, seeds=[11, 12])
    for name, p in built.named_parameters():
        np.testing.assert_array_equal(stack.state_dict()[name][0], p.data)
    assert not np.array_equal(stack.state_dict()["1.weight"][0],
                              stack.state_dict()["1.weight"][1])
    assert gn.stack(built, 3).seeds == [0, 1, 2]


def test_stack_touches_no_global_generator():
    architecture = _architecture()
    gn.manual_seed(5)
    expected = gn.get_backend("cpu").host_rng.random(3)
    gn.manual_seed(5)
    gn.stack(architecture, 4)[1]
    np.testing.assert_array_equal(gn.get_backend("cpu").host_rng.random(3), expected)


def test_indexing_and_unstacking_give_plain_copies():
    architecture = _architecture()
    stack = gn.stack(architecture, 3, seeds=[4, 5, 6])
    models = stack.unstack()
    assert len(stack) == 3 and len(models) == 3
    assert all(type(m) is gn.Sequential for m in models)
    x = np.random.default_rng(0).random((6, 12), dtype=np.float32)
    out = stack(x)
    for i, model in enumerate(models):
        np.testing.assert_array_equal(model(x), out[i])
    np.testing.assert_array_equal(stack[-1](x), out[2])
    models[0][1].weight.data[...] = 0  # a copy: the stack keeps its weights
    np.testing.assert_array_equal(stack(x), out)
    with pytest.raises(IndexError, match="model 3 of a stack of 3"):
        stack[3]
    with pytest.raises(TypeError, match="model number"):
        stack["a"]


def test_parameters_are_layer_major_contiguous_views_of_one_buffer():
    stack = gn.stack(_architecture(), 5)
    opt = gn.optim.SGD(stack.parameters(), lr=0.1)
    offset = 0
    for name, p in stack.named_parameters():
        assert p.data.shape[0] == 5 and p.data.flags.c_contiguous
        assert np.shares_memory(p.data, opt.flat.data)
        assert p.data.__array_interface__["data"][0] == \
            opt.flat.data.__array_interface__["data"][0] + 4 * offset, name
        offset += p.data.size
    assert offset == opt.flat.data.size


def test_cross_entropy_gives_one_loss_per_model():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 6, 3)).astype(np.float32)
    for labels in (rng.integers(0, 3, 6), rng.integers(0, 3, (2, 6)), rng.integers(0, 3, (4, 6))):
        loss_fn = gn.CrossEntropyLoss()
        losses = loss_fn(logits, labels)
        grad = loss_fn.backward()
        assert losses.shape == (4,) and loss_fn.last_correct.shape == (4,)
        for i in range(4):
            row = labels if labels.ndim == 1 else labels[i // (4 // len(labels))]
            alone = gn.CrossEntropyLoss()
            assert losses[i] == alone(logits[i], row)
            assert loss_fn.last_correct[i] == alone.last_correct
            np.testing.assert_array_equal(grad[i], alone.backward())
    with pytest.raises(ValueError, match=r"labels \(6,\) shared by the 4 models or \(g, 6\)"):
        gn.CrossEntropyLoss()(logits, rng.integers(0, 3, (3, 6)))


OPTIMIZERS = {
    "sgd": lambda p, pick: gn.optim.SGD(p, lr=pick([0.01, 0.03, 0.05, 0.1]), momentum=0.9,
                                        nesterov=True, weight_decay=pick([0, 1e-3, 1e-2, 0])),
    "sgd-momenta": lambda p, pick: gn.optim.SGD(p, lr=0.05, momentum=pick([0, 0.5, 0.9, 0.0])),
    "adam": lambda p, pick: gn.optim.Adam(p, lr=pick([1e-3, 3e-3, 5e-3, 1e-2]),
                                          betas=(pick([0.9, 0.8, 0.3, 0.95]),
                                                 pick([0.999, 0.99, 0.9, 0.9])),
                                          weight_decay=pick([0, 1e-3, 1e-2, 0])),
    "adamw": lambda p, pick: gn.optim.AdamW(p, lr=pick([1e-3, 3e-3, 5e-3, 1e-2]),
                                            eps=pick([1e-8, 1e-6, 1e-8, 1e-7]),
                                            weight_decay=pick([0, 1e-3, 1e-2, 0.1])),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_an_update_with_per_model_values_is_each_models_own_bit_for_bit(name):
    architecture = _architecture()
    stack = gn.stack(architecture, 4, seeds=[1, 2, 3, 4])
    opt = OPTIMIZERS[name](stack.parameters(), lambda values: values)
    alone = [_alone(architecture, s) for s in stack.seeds]
    opts = [OPTIMIZERS[name](m.parameters(), lambda values, i=i: values[i])
            for i, m in enumerate(alone)]
    rng = np.random.default_rng(0)
    for _ in range(5):
        for p in stack.parameters():
            p.grad[...] = rng.standard_normal(p.shape)
        for i, model in enumerate(alone):
            for q, (_, p) in zip(model.parameters(), stack.named_parameters()):
                q.grad[...] = p.grad[i]
            opts[i].step()
        opt.step()
    for i, model in enumerate(alone):
        for q, (pname, p) in zip(model.parameters(), stack.named_parameters()):
            np.testing.assert_array_equal(p.data[i], q.data, err_msg=f"{pname} of model {i}")


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_stack_trains_each_model_as_alone_for_100_steps(name):
    """Same seed, same batches: every model within 1e-5 of its weights' scale of the model
    trained alone (the GEMMs of a stack may round differently from one model's)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 12)).astype(np.float32)
    y = rng.integers(0, 3, 400)
    architecture = _architecture(gn.Tanh, flatten=False)
    stack = gn.stack(architecture, 4, seeds=[1, 2, 3, 4])
    opt = OPTIMIZERS[name](stack.parameters(), lambda values: values)
    loss_fn = gn.CrossEntropyLoss()
    alone = [_alone(architecture, s) for s in stack.seeds]
    runs = [(m, OPTIMIZERS[name](m.parameters(), lambda values, i=i: values[i]),
             gn.CrossEntropyLoss()) for i, m in enumerate(alone)]
    first = None
    for _ in range(100):
        rows = rng.permutation(400)[:64]
        losses = loss_fn(stack(X[rows]), y[rows])
        first = losses.copy() if first is None else first
        stack.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        for model, model_opt, model_loss in runs:
            model_loss(model(X[rows]), y[rows])
            model.backward(model_loss.backward(), input_grad=False)
            model_opt.step()
    assert (losses < first).all(), "nothing learnt"
    for i, model in enumerate(alone):
        for q, (pname, p) in zip(model.parameters(), stack.named_parameters()):
            scale = np.abs(q.data).max()
            assert np.abs(p.data[i] - q.data).max() <= 1e-5 * scale, f"{pname} of model {i}"


def test_per_model_values_are_checked():
    stack = gn.stack(_architecture(), 3)
    with pytest.raises(ValueError, match=r"lr must be a number or 3 numbers, one per model"):
        gn.optim.SGD(stack.parameters(), lr=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"momentum\[1\] must be a finite number in \[0, 1\)"):
        gn.optim.SGD(stack.parameters(), lr=0.1, momentum=[0.9, 1.0, 0.5])
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        gn.optim.SGD(stack.parameters(), lr=0.1, momentum=[0.9, 0.0, 0.5], nesterov=True)
    plain = _architecture()
    with pytest.raises(ValueError, match="one value per model is for the parameters of a stack"):
        gn.optim.Adam(plain.parameters(), lr=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="mix those of stacks of"):
        gn.optim.SGD(list(stack.parameters()) + list(plain.parameters()), lr=0.1)
    opt = gn.optim.SGD(stack.parameters(), lr=[0.1, 0.2, 0.3])
    np.testing.assert_array_equal(opt.lr, [0.1, 0.2, 0.3])
    opt.lr = 0.5
    np.testing.assert_array_equal(opt.lr, [0.5, 0.5, 0.5])
    assert opt.state_dict()["lr"] == (0.5, 0.5, 0.5)


def test_a_stack_refuses_what_it_cannot_hold():
    with pytest.raises(TypeError, match="cannot hold layer 3, Softmax"):
        gn.stack(gn.Sequential(gn.Linear(4, 4), gn.ReLU(), gn.Linear(4, 2), gn.Softmax()), 2)
    with pytest.raises(ValueError, match="at least one Linear"):
        gn.stack(gn.Sequential(gn.Flatten(), gn.ReLU()), 2)
    with pytest.raises(ValueError, match="seeds must hold one seed per model, 3, got 2"):
        gn.stack(_architecture(), 3, seeds=[1, 2])
    with pytest.raises(ValueError, match="positive integer"):
        gn.stack(_architecture(), 0)
    stack = gn.stack(_architecture(flatten=False), 4)
    with pytest.raises(ValueError, match=r"takes a batch \(B, 12\) shared by all models, or "
                                         r"\(g, B, 12\)"):
        stack(np.zeros((3, 5, 12), np.float32))  # 3 groups do not divide 4 models


def test_a_stack_pickles_and_copies_with_its_model_axis():
    import copy
    import pickle

    stack = gn.stack(_architecture(), 3)
    x = np.random.default_rng(0).random((4, 12), dtype=np.float32)
    out = stack(x)
    for twin in (pickle.loads(pickle.dumps(stack)), copy.deepcopy(stack)):
        np.testing.assert_array_equal(twin(x), out)
        assert gn.optim.Adam(twin.parameters(), lr=[1e-3, 2e-3, 3e-3]).models == 3
