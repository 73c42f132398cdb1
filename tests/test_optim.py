"""Optimizers: updates against PyTorch (when installed) and hand-written formulas, state, errors."""
import numpy as np
import pytest

import gpunet as gn


def _model(backend, seed=0):
    gn.manual_seed(seed)
    return gn.Sequential(gn.Linear(4, 5), gn.ReLU(), gn.Linear(5, 3)).to(backend.name)


def _run(backend, model, opt, steps, rng):
    x = backend.asarray(rng.standard_normal((8, 4)), dtype=np.float32)
    y = backend.asarray(rng.integers(0, 3, 8))
    loss_fn = gn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        losses.append(float(loss_fn(model(x), y)))
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
    return losses


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
]


@pytest.mark.parametrize("name,kwargs", CASES)
def test_optimizers_match_pytorch(backend, name, kwargs):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference; not installed")
    model = _model(backend)
    ref = [torch.tensor(gn.to_numpy(p.data), requires_grad=True) for p in model.parameters()]
    opt = getattr(gn.optim, name)(model.parameters(), **kwargs)
    ref_opt = getattr(torch.optim, name)(ref, **kwargs)
    rng = np.random.default_rng(0)
    for _ in range(5):
        for p, r in zip(model.parameters(), ref):
            grad = rng.standard_normal(p.shape).astype(np.float32)
            p.grad[...] = backend.asarray(grad)
            r.grad = torch.tensor(grad)
        opt.step()
        ref_opt.step()
    for p, r in zip(model.parameters(), ref):
        np.testing.assert_allclose(gn.to_numpy(p.data), r.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_plain_sgd_is_p_minus_lr_grad():
    model = _model(gn.get_backend("cpu"))
    before = [p.data.copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad[...] = 1.0
    gn.optim.SGD(model.parameters(), lr=0.5).step()
    for b, p in zip(before, model.parameters()):
        np.testing.assert_allclose(p.data, b - 0.5, rtol=1e-6)


@pytest.mark.parametrize("name,kwargs", CASES)
def test_optimizers_reduce_the_loss(backend, name, kwargs):
    model = _model(backend)
    losses = _run(backend, model, getattr(gn.optim, name)(model.parameters(), **kwargs), 60,
                  np.random.default_rng(1))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name,kwargs", [CASES[1], CASES[5]])
def test_state_dict_resumes_identically(backend, name, kwargs):
    rng_seed = 5
    model = _model(backend)
    opt = getattr(gn.optim, name)(model.parameters(), **kwargs)
    _run(backend, model, opt, 3, np.random.default_rng(rng_seed))
    model_state, opt_state = model.state_dict(), opt.state_dict()
    straight = _run(backend, model, opt, 3, np.random.default_rng(rng_seed + 1))

    resumed = _model(backend, seed=99)
    resumed.load_state_dict(model_state)
    opt2 = getattr(gn.optim, name)(resumed.parameters(), **kwargs)
    opt2.load_state_dict(opt_state)
    assert opt2.step_count == 3
    again = _run(backend, resumed, opt2, 3, np.random.default_rng(rng_seed + 1))
    np.testing.assert_allclose(again, straight, rtol=1e-6)


def test_lr_can_be_changed_between_steps():
    model = _model(gn.get_backend("cpu"))
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    opt.lr = 0.0
    before = [p.data.copy() for p in model.parameters()]
    for p in model.parameters():
        p.grad[...] = 1.0
    opt.step()
    for b, p in zip(before, model.parameters()):
        np.testing.assert_array_equal(p.data, b)


def test_bad_hyperparameters_are_refused():
    params = list(_model(gn.get_backend("cpu")).parameters())
    with pytest.raises(ValueError, match="empty parameter list"):
        gn.optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0, got -0.1"):
        gn.optim.SGD(params, lr=-0.1)
    with pytest.raises(ValueError, match="lr must be a finite number >= 0, got inf"):
        gn.optim.SGD(params, lr=float("inf"))
    with pytest.raises(ValueError, match=r"momentum must be a finite number in \[0, 1\), got 1.0"):
        gn.optim.SGD(params, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="momentum"):
        gn.optim.SGD(params, lr=0.1, momentum=-0.5)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        gn.optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        gn.optim.Adam(params, betas=(0.9,))
    with pytest.raises(ValueError, match="weight_decay"):
        gn.optim.AdamW(params, weight_decay=-1)


def test_optimizer_state_of_another_type_is_refused():
    params = list(_model(gn.get_backend("cpu")).parameters())
    state = gn.optim.Adam(params).state_dict()
    with pytest.raises(ValueError, match="optimizer state is for 'Adam'"):
        gn.optim.SGD(params, lr=0.1).load_state_dict(state)


def test_state_with_other_hyperparameters_is_refused_before_anything_changes():
    params = list(_model(gn.get_backend("cpu")).parameters())
    saved = gn.optim.SGD(params, lr=0.1, momentum=0.9)
    saved.buffers["momentum"][...] = 1.0
    state = saved.state_dict()
    plain = gn.optim.SGD(params, lr=0.1)
    with pytest.raises(ValueError, match="momentum=0.9, this optimizer has momentum=0.0"):
        plain.load_state_dict(state)
    adam = gn.optim.Adam(params, lr=0.01)
    adam_state = adam.state_dict()
    del adam_state["lr"]
    adam.buffers["exp_avg"][...] = 3.0
    with pytest.raises(KeyError, match=r"lacks \['lr'\]"):
        adam.load_state_dict({**adam_state, "buffer.exp_avg": np.zeros_like(adam.buffers["exp_avg"])})
    np.testing.assert_array_equal(adam.buffers["exp_avg"], 3.0)
    with pytest.raises(ValueError, match=r"betas=\[0.5, 0.5\]"):
        adam.load_state_dict({**adam.state_dict(), "betas": [0.5, 0.5]})


def test_moving_the_model_after_creating_the_optimizer_is_an_error():
    model = _model(gn.get_backend("cpu"))
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    model.to("cpu")
    with pytest.raises(RuntimeError, match="create the optimizer after moving the model"):
        opt.step()


def test_optimizer_packs_a_lone_layer_into_a_flat_buffer():
    layer = gn.Linear(3, 2)
    opt = gn.optim.SGD(layer.parameters(), lr=1.0)
    layer.weight.grad[...] = 1.0
    layer.bias.grad[...] = 2.0
    w, b = layer.weight.data.copy(), layer.bias.data.copy()
    opt.step()
    np.testing.assert_allclose(layer.weight.data, w - 1.0)
    np.testing.assert_allclose(layer.bias.data, b - 2.0)


@pytest.mark.parametrize("name,kwargs", [
    ("Adam", dict(lr=1e-3)),
    ("Adam", dict(lr=1e-3, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-3, weight_decay=0.01)),
    ("AdamW", dict(lr=1e-3, betas=(0.3, 0.99), weight_decay=0.01)),  # lerp's other branch
])
def test_adam_bias_correction_matches_pytorch_over_1000_steps(backend, name, kwargs):
    """1 - beta2^t in float32 cancels (about 1e-4 of the first update, 1.4e-6 of the
    parameters after 1,000 steps); computed in double, as PyTorch does, both stay far below."""
    torch = pytest.importorskip("torch", reason="PyTorch is the reference; not installed")
    rng = np.random.default_rng(3)
    start = rng.standard_normal(20_000).astype(np.float32)
    grads = rng.standard_normal((50, 20_000)).astype(np.float32)
    param = gn.Parameter(backend.asarray(start))
    opt = getattr(gn.optim, name)([param], **kwargs)
    ref = torch.tensor(start.copy(), requires_grad=True)
    ref_opt = getattr(torch.optim, name)([ref], foreach=False, **kwargs)
    for step in range(1, 1001):
        param.grad[...] = backend.asarray(grads[step % 50])
        ref.grad = torch.from_numpy(grads[step % 50])
        opt.step()
        ref_opt.step()
        if step == 1:
            first = gn.to_numpy(param.data) - start
            want = ref.detach().numpy() - start
            np.testing.assert_allclose(first, want, rtol=0, atol=1e-5 * np.abs(want).max())
    want = ref.detach().numpy()
    np.testing.assert_allclose(gn.to_numpy(param.data), want, rtol=0,
                               atol=1e-6 * np.abs(want).max())
