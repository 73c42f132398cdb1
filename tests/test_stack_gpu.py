"""A stack's model axis on the GPU: the fused kernels take it (batched bias+ReLU epilogue and
bias gradient, softmax cross-entropy with one loss per model, the per-model optimizer
updates, the static step's gather and record), against the NumPy reference with poisoned
outputs; the fused paths, not the fallbacks, run; and a stack trains on the GPU as on the
CPU. Runs on a CUDA device, or on the CuPy stand-in (tests/cupy_standin) where none answers."""
import math

import numpy as np
import pytest

import gpunet as gn
from gpunet.ops.models import ModelLayout
from gpunet.ops.numpy_ops import NumpyOps

cupy = pytest.importorskip("cupy")
from gpunet.ops.cupy_ops import CupyOps  # noqa: E402  (needs cupy)
from gpunet.ops.launchers import linear_relu, optim, softmax_xent, step  # noqa: E402
from gpu_arrays import REF, assert_close, normal, poisoned  # noqa: E402

gpu = pytest.mark.gpu


def _fused_only(monkeypatch, name):
    """Make the reference ``NumpyOps.name`` fail: the test passes only on the fused path."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"the fused path was not taken: NumpyOps.{name} ran")
    monkeypatch.setattr(NumpyOps, name, refuse)


def _ops(route):
    ops = CupyOps()
    ops.gemm_routes = ((math.inf, route),)
    return ops


@gpu
@pytest.mark.parametrize("route", ["cublas", "tiled"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("models,batch,n_in,n_out", [(3, 37, 20, 12), (5, 8, 33, 10),
                                                      (2, 130, 64, 64)])
def test_a_stacks_linear_layer_is_one_batched_product_and_fused_kernels(
        rng, monkeypatch, route, relu, models, batch, n_in, n_out):
    x, w = normal(rng, models, batch, n_in), normal(rng, models, n_out, n_in)
    b, g = normal(rng, models, n_out), normal(rng, models, batch, n_out)
    want = {"out": np.empty((models, batch, n_out), np.float32), "gw": np.empty_like(w),
            "gb": np.empty_like(b), "gx": np.empty_like(x), "gz": np.empty_like(g)}
    name = "linear_relu" if relu else "linear"
    getattr(REF, f"{name}_forward")(x, w, b, want["out"])
    if relu:
        REF.linear_relu_backward(g, want["out"], x, w, want["gw"], want["gb"], want["gz"],
                                 want["gx"])
    else:
        REF.linear_backward(g, x, w, want["gw"], want["gb"], want["gx"])
    for method in (f"{name}_forward", f"{name}_backward"):
        _fused_only(monkeypatch, method)
    ops = _ops(route)
    got = {k: poisoned(v.shape) for k, v in want.items()}
    dev = {k: cupy.asarray(v) for k, v in {"x": x, "w": w, "b": b, "g": g}.items()}
    # the layer after a stack's first: its input a strided view (rows k * n_in apart)
    wide = cupy.empty((batch, models, n_in), np.float32)
    wide[...] = dev["x"].transpose(1, 0, 2)
    dev["x"] = wide.transpose(1, 0, 2)
    got["gx"] = cupy.full((batch, models, n_in), np.nan, np.float32).transpose(1, 0, 2)
    getattr(ops, f"{name}_forward")(dev["x"], dev["w"], dev["b"], got["out"])
    assert_close(got["out"], want["out"], 1e-4, "out")
    if relu:
        ops.linear_relu_backward(dev["g"], got["out"], dev["x"], dev["w"], got["gw"],
                                 got["gb"], got["gz"], got["gx"])
        assert_close(got["gz"], want["gz"], 1e-5, "gz")
    else:
        ops.linear_backward(dev["g"], dev["x"], dev["w"], got["gw"], got["gb"], got["gx"])
    for key in ("gw", "gb", "gx"):
        assert_close(got[key], want[key], 1e-4, key)


@gpu
def test_the_batched_epilogue_uses_each_models_bias_row(rng):
    out = normal(rng, 4, 6, 8)
    bias = normal(rng, 4, 8)
    dev = cupy.asarray(out)
    linear_relu.bias_act(dev, cupy.asarray(bias), relu=True)
    assert_close(dev, np.maximum(out + bias[:, None, :], 0), 1e-6)


@gpu
@pytest.mark.parametrize("label_rows", [0, 2, 6])  # shared labels, 2 groups, one per model
def test_softmax_cross_entropy_gives_each_model_its_own_mean(rng, monkeypatch, label_rows):
    models, batch, classes = 6, 45, 10
    logits = normal(rng, models, batch, classes, scale=3.0)
    labels = rng.integers(0, classes, (label_rows, batch) if label_rows else batch)
    want_grad = np.empty_like(logits)
    want_loss, want_hits = REF.softmax_cross_entropy(logits, labels, want_grad)
    _fused_only(monkeypatch, "softmax_cross_entropy")
    grad = poisoned(logits.shape)
    loss, hits = CupyOps().softmax_cross_entropy(cupy.asarray(logits), cupy.asarray(labels),
                                                 grad)
    assert loss.shape == hits.shape == (models,)
    assert_close(loss, want_loss, 1e-5, "loss")
    np.testing.assert_array_equal(cupy.asnumpy(hits), want_hits)
    assert_close(grad, want_grad, 1e-5, "grad")


@gpu
def test_a_bad_label_of_a_stack_is_reported_at_its_index(rng):
    ops = CupyOps()
    labels = np.zeros((2, 9), np.int64)
    labels[1, 4] = 12
    ops.softmax_cross_entropy(cupy.asarray(normal(rng, 4, 9, 10)), cupy.asarray(labels),
                              poisoned((4, 9, 10)))
    with pytest.raises(ValueError, match="label 12 at index 13 of a batch"):
        ops.check_errors()


def _layout(rng, models):
    sizes = [models * s for s in (12, 5, 7, 1)]  # segments that straddle float4 groups
    return ModelLayout(models, sizes), sum(sizes)


@gpu
@pytest.mark.parametrize("name", ["sgd", "sgd_momenta", "adam", "adamw"])
def test_the_per_model_optimizer_kernels_update_as_the_reference(rng, monkeypatch, name):
    models = 5
    layout, size = _layout(rng, models)
    per = lambda values: np.array(values, dtype=np.float64)  # noqa: E731
    lr = np.array([0.01, 0.05, 0.1, 0.2, 0.3], np.float32)
    kwargs = {
        "sgd": dict(momentum=0.9, weight_decay=per([0, 1e-3, 1e-2, 0, 0.1]), nesterov=True),
        "sgd_momenta": dict(momentum=per([0, 0.5, 0.9, 0, 0.99]), weight_decay=0.0,
                            nesterov=False),
        "adam": dict(beta1=per([0.9, 0.8, 0.3, 0.95, 0.5]), beta2=0.999,
                     eps=per([1e-8, 1e-6, 1e-8, 1e-7, 1e-3]), weight_decay=1e-2,
                     decoupled=False),
        "adamw": dict(beta1=0.9, beta2=per([0.999, 0.99, 0.9, 0.9, 0.5]), eps=1e-8,
                      weight_decay=per([0, 1e-3, 1e-2, 0.1, 0.5]), decoupled=True),
    }[name]
    state = {k: normal(rng, size) for k in ("param", "grad", "a", "b")}
    state["b"] = np.abs(state["b"])  # Adam's second moment
    dev = {k: cupy.asarray(v) for k, v in state.items()}
    dev_kwargs = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v
                  for k, v in kwargs.items()}
    method = "adam_update" if name.startswith("adam") else "sgd_update"
    step_count = np.array([3], np.float32)
    for _ in range(3):
        if method == "sgd_update":
            REF.sgd_update(state["param"], state["grad"], state["a"], lr, models=layout,
                           **kwargs)
        else:
            REF.adam_update(state["param"], state["grad"], state["a"], state["b"], lr,
                            step_count, models=layout, **kwargs)
    _fused_only(monkeypatch, method)
    ops = CupyOps()
    for _ in range(3):
        if method == "sgd_update":
            ops.sgd_update(dev["param"], dev["grad"], dev["a"], cupy.asarray(lr),
                           models=layout, **dev_kwargs)
        else:
            ops.adam_update(dev["param"], dev["grad"], dev["a"], dev["b"], cupy.asarray(lr),
                            cupy.asarray(step_count), models=layout, **dev_kwargs)
    for key in ("param", "a", "b") if method == "adam_update" else ("param", "a"):
        assert_close(dev[key], state[key], 1e-5, key)


@gpu
def test_the_static_steps_gather_one_order_per_group_and_record_each_model(rng):
    X = rng.integers(0, 256, (50, 3, 4)).astype(np.uint8)
    y = rng.integers(0, 10, 50)
    order = np.stack([rng.permutation(50) for _ in range(3)])
    cursor = np.array([8], np.int64)
    want_x, want_y = np.empty((3, 6, 3, 4), np.float32), np.empty((3, 6), np.int64)
    REF.gather_batch(X, y, order, cursor, want_x, want_y)
    got_x, got_y = poisoned(want_x.shape), cupy.full(want_y.shape, -1, np.int64)
    step.gather_batch(cupy.asarray(X), cupy.asarray(y), cupy.asarray(order),
                      cupy.asarray(cursor), got_x, got_y)
    assert_close(got_x, want_x, 1e-7, "x")
    np.testing.assert_array_equal(cupy.asnumpy(got_y), want_y)
    losses, hits = cupy.zeros((4, 5), np.float64), cupy.zeros((4, 5), np.int64)
    loss = cupy.asarray(normal(rng, 5))
    correct = cupy.arange(5, dtype=np.int64)
    dev_cursor = cupy.asarray(np.array([12], np.int64))
    step.end_step(dev_cursor, 6, 6, loss, correct, losses, hits)
    assert int(dev_cursor[0]) == 18
    np.testing.assert_array_equal(cupy.asnumpy(losses)[2], cupy.asnumpy(loss))
    np.testing.assert_array_equal(cupy.asnumpy(hits)[2], np.arange(5))
    assert not cupy.asnumpy(losses)[[0, 1, 3]].any()


@gpu
@pytest.mark.parametrize("order", ["shared", "per_model"])
def test_a_stack_trains_on_the_gpu_as_on_the_cpu(rng, order):
    X = rng.standard_normal((150, 12)).astype(np.float32)
    y = rng.integers(0, 4, 150)
    runs = {}
    for device in ("cpu", "gpu"):
        arch = gn.Sequential(gn.Linear(12, 16), gn.ReLU(), gn.Linear(16, 4)).to(device)
        stack = gn.stack(arch, 4, seeds=[1, 2, 3, 4])
        opt = gn.optim.Adam(stack.parameters(), lr=[1e-3, 3e-3, 1e-2, 3e-2],
                            weight_decay=[0, 1e-3, 0, 1e-2])
        histories = gn.fit(stack, gn.CrossEntropyLoss(), opt, (X, y), epochs=3, batch_size=32,
                           seed=0, val_split=0.2, progress=False, verbose=False, order=order,
                           graph="off")
        runs[device] = (stack.state_dict(), histories)
    (cpu_state, cpu_hist), (gpu_state, gpu_hist) = runs["cpu"], runs["gpu"]
    for name in cpu_state:
        assert_close(gpu_state[name], cpu_state[name], 1e-4, name)
    for a, b in zip(cpu_hist, gpu_hist):
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-4)
        assert b["val_accuracy"] == pytest.approx(a["val_accuracy"], abs=2 / 30)


@gpu
@pytest.mark.parametrize("order", ["shared", "bootstrap"])
def test_the_captured_step_takes_a_stack(rng, order):
    """graph='on' records the whole step of a stack (batched tiled GEMMs, per-model loss
    and update, one order per model) and replays it: the same training as uncaptured."""
    X = rng.standard_normal((130, 12)).astype(np.float32)
    y = rng.integers(0, 4, 130)
    runs = {}
    for graph in ("off", "on"):
        arch = gn.Sequential(gn.Linear(12, 16), gn.ReLU(), gn.Linear(16, 8), gn.ReLU(),
                             gn.Linear(8, 4)).to("gpu")
        stack = gn.stack(arch, 4, seeds=[5, 6, 7, 8])
        opt = gn.optim.SGD(stack.parameters(), lr=[0.01, 0.02, 0.05, 0.1], momentum=0.9,
                           weight_decay=[0, 1e-4, 1e-3, 0])
        histories = gn.fit(stack, gn.CrossEntropyLoss(), opt, (X, y), epochs=3,
                           batch_size=32, seed=1, val_split=0.2, progress=False,
                           verbose=False, order=order, graph=graph,
                           schedule=gn.schedules.CosineLR(3))
        runs[graph] = (stack.state_dict(), histories, opt.step_count)
    (eager, eager_hist, eager_steps), (captured, captured_hist, captured_steps) = \
        runs["off"], runs["on"]
    assert eager_steps == captured_steps == 3 * 4
    for name in eager:  # cuBLAS (uncaptured) against the tiled GEMM (captured)
        assert_close(captured[name], eager[name], 1e-4, name)
    for a, b in zip(eager_hist, captured_hist):
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-4)


def test_the_launchers_declare_the_model_axis_kernels():
    assert {"sgd_update_models", "adam_update_models"} <= set(optim.SOURCE.kernels)
    assert dict(optim.SOURCE.defines)["MAX_MODELS"] == optim.MAX_MODELS
    assert "softmax_xent_finish" in softmax_xent.SOURCE.kernels
