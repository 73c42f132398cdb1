"""Gradient clipping: gn.clip_grad_norm_ and gn.clip_grad_value_ against torch.nn.utils on the
same gradients, the flat-buffer kernel against the NumPy reference (GPU cases: the backend
fixture and the gpu mark), and fit(clip_grad_norm=...) in the eager loop and the static step,
where it allocates nothing."""
import contextlib
import math
import tracemalloc

import numpy as np
import pytest

import gpunet as gn
from gpunet.nn.clip_grad import NormClipper
from gpunet.ops.numpy_ops import NumpyOps
from gpunet.training.engine.step_runner import StepRunner


def _torch():
    return pytest.importorskip("torch", reason="PyTorch is the reference; not installed")


def _model_with_gradients(backend, scale=1.0, seed=0):
    gn.manual_seed(seed)
    model = gn.Sequential(gn.Linear(20, 33), gn.ReLU(), gn.Linear(33, 7)).to(backend.name)
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.grad = backend.asarray(rng.standard_normal(p.shape) * scale, dtype=np.float32)
    return model


def _torch_grads(torch, params):
    tensors = []
    for p in params:
        t = torch.zeros(p.shape, requires_grad=True)
        t.grad = torch.tensor(gn.to_numpy(p.grad).copy())
        tensors.append(t)
    return tensors


def _assert_grads_equal(params, tensors, rtol=1e-6):
    for p, t in zip(params, tensors):
        want = t.grad.numpy()
        np.testing.assert_allclose(gn.to_numpy(p.grad), want, rtol=rtol,
                                   atol=rtol * max(np.abs(want).max(), 1e-30))


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0])
@pytest.mark.parametrize("max_norm", [0.5, 1e4])   # clips; leaves alone (coefficient 1)
def test_clip_grad_norm_equals_torch(backend, norm_type, max_norm):
    torch = _torch()
    params = list(_model_with_gradients(backend).parameters())
    tensors = _torch_grads(torch, params)
    want = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type)
    norm = gn.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert norm.shape == () and norm.dtype == np.float32
    assert float(norm) == pytest.approx(float(want), rel=1e-6)
    _assert_grads_equal(params, tensors)


def test_a_subset_of_parameters_is_clipped_alone(backend):
    torch = _torch()
    model = _model_with_gradients(backend)
    head = list(model[2].parameters())
    untouched = gn.to_numpy(model[0].weight.grad).copy()
    tensors = _torch_grads(torch, head)
    want = torch.nn.utils.clip_grad_norm_(tensors, 0.3)
    assert float(gn.clip_grad_norm_(head, 0.3)) == pytest.approx(float(want), rel=1e-6)
    _assert_grads_equal(head, tensors)
    np.testing.assert_array_equal(gn.to_numpy(model[0].weight.grad), untouched)
    single = model[0].bias
    t = _torch_grads(torch, [single])
    torch.nn.utils.clip_grad_norm_(t[0], 0.1)
    gn.clip_grad_norm_(single, 0.1)
    _assert_grads_equal([single], t)


def test_non_finite_gradients_as_torch(backend):
    torch = _torch()
    params = list(_model_with_gradients(backend).parameters())
    params[1].grad[3] = np.nan
    before = [gn.to_numpy(p.grad).copy() for p in params]
    with pytest.raises(RuntimeError, match="norm of order 2 of the gradients is nan"):
        gn.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    for p, b in zip(params, before):   # raised before scaling
        np.testing.assert_array_equal(gn.to_numpy(p.grad), b)
    tensors = _torch_grads(torch, params)
    torch.nn.utils.clip_grad_norm_(tensors, 1.0)
    assert math.isnan(float(gn.clip_grad_norm_(params, 1.0)))
    for p, t in zip(params, tensors):  # a NaN norm spreads to every gradient in both
        assert np.isnan(gn.to_numpy(p.grad)).all() and t.grad.isnan().all()


def test_clip_grad_value_equals_torch(backend):
    torch = _torch()
    model = _model_with_gradients(backend, scale=3.0)
    params = list(model.parameters())
    tensors = _torch_grads(torch, params)
    torch.nn.utils.clip_grad_value_(tensors, 1.5)
    assert gn.clip_grad_value_(model.parameters(), 1.5) is None
    _assert_grads_equal(params, tensors, rtol=0)
    gn.clip_grad_value_(params[1], 0.25)
    assert np.abs(gn.to_numpy(params[1].grad)).max() == np.float32(0.25)


def test_clipping_arguments_are_checked():
    model = gn.Sequential(gn.Linear(2, 2))
    for bad in (0, -1, "two", math.nan):
        with pytest.raises(ValueError, match=r"norm_type must be a number > 0 or inf"):
            gn.clip_grad_norm_(model.parameters(), 1.0, norm_type=bad)
    with pytest.raises(ValueError, match="max_norm"):
        gn.clip_grad_norm_(model.parameters(), -1.0)
    with pytest.raises(TypeError, match=r"got the model itself .*model.parameters\(\)"):
        gn.clip_grad_norm_(model, 1.0)
    with pytest.raises(ValueError, match="clip_value"):
        gn.clip_grad_value_(model.parameters(), -0.5)
    assert float(gn.clip_grad_norm_([], 1.0)) == 0.0
    assert float(gn.clip_grad_norm_(model.parameters(), 1.0, norm_type="inf")) == 0.0


# -- the flat-buffer ops: NumPy reference and the GPU kernel -------------------------------
@contextlib.contextmanager
def _kernel_only():
    """The reference ops raise inside: a GPU call that falls back fails the test."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("grad_norm", "clip_by_norm"):
            def refuse(self, *args, _name=name, **kwargs):
                raise AssertionError(f"NumpyOps.{_name} ran where the kernel was expected")
            mp.setattr(NumpyOps, name, refuse)
        yield


def _exact_norm(values, norm_type):
    a = np.abs(values.astype(np.float64))
    if math.isinf(norm_type):
        return a.max(initial=0.0)
    return (a ** norm_type).sum() ** (1 / norm_type)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 2.5])
@pytest.mark.parametrize("n", [0, 1, 7, 4099, 256 * 256 * 16 + 5])  # past one grid's parts
def test_grad_norm_and_clip_on_the_flat_buffer(backend, rng, n, norm_type):
    ops = backend.ops
    values = (rng.standard_normal(n) * 0.01).astype(np.float32)
    grad = backend.asarray(values.copy())
    if backend.name == "gpu" and n > 1:
        grad = backend.xp.empty(n + 1, dtype=np.float32)[1:]   # misaligned: scalar loops
        grad[...] = backend.asarray(values)
    norm = backend.xp.full((), np.nan, dtype=np.float32)
    with _kernel_only() if backend.name == "gpu" else contextlib.nullcontext():
        ops.grad_norm(grad, norm_type, norm)
        ops.clip_by_norm(grad, 0.05, norm)
    exact = _exact_norm(values, norm_type)
    assert float(norm) == pytest.approx(exact, rel=2e-6, abs=1e-30)
    coef = min(np.float32(0.05) / (np.float32(exact) + np.float32(1e-6)), 1.0)
    np.testing.assert_allclose(gn.to_numpy(grad), values * coef, rtol=2e-6, atol=1e-12)


def test_infinity_norm_keeps_a_nan(backend, rng):
    values = rng.standard_normal(10_000).astype(np.float32)
    values[9_999] = np.nan
    norm = backend.xp.zeros((), dtype=np.float32)
    backend.ops.grad_norm(backend.asarray(values), math.inf, norm)
    assert math.isnan(float(norm))


def test_the_norm_is_the_same_every_time(backend, rng):
    grad = backend.asarray(rng.standard_normal(300_001).astype(np.float32))
    norms = set()
    for _ in range(5):
        norm = backend.xp.zeros((), dtype=np.float32)
        backend.ops.grad_norm(grad, 2.0, norm)
        norms.add(float(norm))
    assert len(norms) == 1


# -- fit(clip_grad_norm=...) ---------------------------------------------------------------
def _blobs(n=96):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, n)
    X = (rng.standard_normal((n, 4)) + 3 * np.eye(4)[y]).astype(np.float32)
    return X, y


def _clipped_run(backend, graph, clip, epochs=4):
    gn.manual_seed(0)
    model = gn.Sequential(gn.Linear(4, 16), gn.ReLU(), gn.Linear(16, 3)).to(backend.name)
    opt = gn.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    gn.fit(model, gn.CrossEntropyLoss(), opt, _blobs(), epochs=epochs, batch_size=None,
           clip_grad_norm=clip, graph=graph, progress=False, verbose=False)
    return model.state_dict()


def test_fit_clips_each_step_as_clip_grad_norm_does(backend):
    gn.manual_seed(0)
    model = gn.Sequential(gn.Linear(4, 16), gn.ReLU(), gn.Linear(16, 3)).to(backend.name)
    opt = gn.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    X, y = (backend.asarray(a) for a in _blobs())
    loss_fn = gn.CrossEntropyLoss()
    for _ in range(4):   # full batch: the same steps fit takes, by hand
        loss_fn(model(X), y)
        model.backward(loss_fn.backward(), input_grad=False)
        gn.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
    by_hand = model.state_dict()
    runs = {graph: _clipped_run(backend, graph, 0.1) for graph in ("off", "auto")}
    unclipped = _clipped_run(backend, "off", None)
    for name, value in by_hand.items():
        np.testing.assert_array_equal(runs["off"][name], value, err_msg=name)
        np.testing.assert_array_equal(runs["auto"][name], value, err_msg=name)
    assert any(not np.allclose(unclipped[k], by_hand[k]) for k in by_hand)


def test_fit_checks_clip_grad_norm_before_anything_runs():
    model = gn.Sequential(gn.Linear(4, 3))
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    for bad in (0, -1.0, math.inf):
        with pytest.raises(ValueError, match="clip_grad_norm"):
            gn.fit(model, gn.CrossEntropyLoss(), opt, _blobs(), clip_grad_norm=bad,
                   progress=False, verbose=False)


def test_a_clipped_static_step_allocates_nothing():
    n, batch = 1100, 256
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 5, n)
    gn.manual_seed(1)
    model = gn.Sequential(gn.Flatten(), gn.Linear(784, 32), gn.ReLU(), gn.Linear(32, 5))
    opt = gn.optim.Adam(model.parameters(), lr=1e-3)
    runner = StepRunner(model, opt, X, y, batch, -(-n // batch),
                        clip=NormClipper(opt.flat, 0.01))
    try:
        for measured in (False, True):
            runner.start_epoch()
            if measured:
                tracemalloc.start()
            for step in range(runner.count):
                runner.run(step)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        runner.close()
    assert peak < batch * 784 * 4 / 8, f"peak {peak} bytes"
