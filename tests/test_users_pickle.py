"""Models, losses, optimizers and backends pickle and deep-copy (joblib, multiprocessing and
sklearn's clone need it); the backend travels by its device name."""
import copy
import multiprocessing
import pickle

import numpy as np
import pytest

import gpunet as gn


def _trained(backend, rng):
    gn.manual_seed(0)
    model = gn.Sequential(gn.Linear(4, 8), gn.ReLU(), gn.Dropout(0.2), gn.Linear(8, 3))
    model.to(backend.name)
    loss_fn = gn.CrossEntropyLoss()
    opt = gn.optim.Adam(model.parameters(), lr=0.01)
    x = backend.asarray(rng.standard_normal((16, 4)), dtype=np.float32)
    y = backend.asarray(rng.integers(0, 3, 16))
    for _ in range(3):
        loss_fn(model(x), y)
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
    return model, loss_fn, opt, x, y


def _packed(model, opt):
    """Every parameter is a view of the optimizer's flat buffer."""
    return all(p.flat is opt.flat and p.data.base is opt.flat.data for p in model.parameters())


def test_a_model_round_trips_through_pickle(backend, rng):
    model, _, _, x, _ = _trained(backend, rng)
    model.eval()
    clone = pickle.loads(pickle.dumps(model))
    clone.eval()
    assert clone.device == backend.name
    np.testing.assert_array_equal(gn.to_numpy(clone(x)), gn.to_numpy(model(x)))
    flat = next(clone.parameters()).flat
    assert all(p.flat is flat and p.data.base is flat.data for p in clone.parameters())


def test_pickles_hold_the_weights_not_the_buffers(rng):
    model, loss_fn, _, _, _ = _trained(gn.get_backend("cpu"), rng)
    weights = sum(p.data.nbytes for p in model.parameters())
    size = len(pickle.dumps(model))
    assert size < 2.5 * weights + 4000   # data and grad, no activations or workspaces
    restored = pickle.loads(pickle.dumps(loss_fn))
    with pytest.raises(RuntimeError, match="before the loss was computed"):
        restored.backward()


def test_deepcopy_of_model_and_optimizer_keeps_them_together(backend, rng):
    model, loss_fn, opt, x, y = _trained(backend, rng)
    before = model.state_dict()
    model2, opt2 = copy.deepcopy((model, opt))
    assert _packed(model2, opt2) and not _packed(model2, opt)
    loss_fn(model2(x), y)
    model2.backward(loss_fn.backward(), input_grad=False)
    opt2.step()
    for name, value in model.state_dict().items():       # the original is untouched
        np.testing.assert_array_equal(value, before[name])
    assert any(not np.array_equal(v, before[k]) for k, v in model2.state_dict().items())
    assert opt2.state_dict()["step"] == opt.state_dict()["step"] + 1


def test_an_optimizer_pickles_with_its_state(rng):
    _, _, opt, _, _ = _trained(gn.get_backend("cpu"), rng)
    restored = pickle.loads(pickle.dumps(opt))
    for key, value in opt.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[key], value)


def test_a_backend_pickles_by_its_device_name():
    cpu = gn.get_backend("cpu")
    assert pickle.loads(pickle.dumps(cpu)) is cpu
    assert len(pickle.dumps(cpu)) < 100
    assert copy.deepcopy(cpu) is cpu


def _predict_in_child(model, x):
    return gn.to_numpy(model.eval()(x))


def test_a_model_crosses_into_another_process(rng):
    model, _, _, x, _ = _trained(gn.get_backend("cpu"), rng)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        out = pool.apply(_predict_in_child, (model, x))
    np.testing.assert_array_equal(out, model.eval()(x))
