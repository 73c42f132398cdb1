"""The whole GPU path against the NumPy reference, PyTorch and itself (issue 8's missing tests).

Every test here needs a CUDA device (marked ``gpu``; skipped with the probe's reason without
one) and is written to fail on the bug it targets: outputs are poisoned with NaN before a
kernel writes them, strided views keep a sentinel between their elements, and where the fused
path must run, the reference implementations are made to raise while the GPU op runs
(``fused_only``: ``CupyOps`` reaches ``NumpyOps.<op>`` only through ``super()``, i.e. when it
falls back).

- Reference fallbacks: float64 and non-contiguous (strided, transposed) arrays for every op,
  both optimizers included, one argument at a time and all at once.
- Real parameter views: the biases of a 3-7-5 model sit at float offsets 21 and 63 of the flat
  buffer, a 2-7-8-4 model has widths 8 and 4 (float4 candidates) at misaligned offsets.
- Batch 1 and 65,536; past the int32 index range (a correct result or a clear error).
- int32 and int64 labels, bad labels of both widths, NaN and +-inf logits.
- The tiled GEMM route inside whole training runs (a loop and ``fit``), cuBLAS refused.
- One training step recorded as a CUDA graph (no host synchronisation) and replayed.
- Adam, AdamW and SGD against ``torch.optim`` over 1,000 steps.
"""
import contextlib
import math
import re

import numpy as np
import pytest

import gpunet as gn
from standin import active as on_standin
from gpunet.ops.numpy_ops import NumpyOps

cupy = pytest.importorskip("cupy")
from gpu_arrays import (REF, assert_close, host, misaligned, normal,  # noqa: E402
                        poisoned, reference_linear)

gpu = pytest.mark.gpu
ROUTES = ("cublas", "tiled")
SENTINEL = -7777.0  # what the gaps of a strided view hold; an op must never write there


# -- fixtures and helpers ------------------------------------------------------------------
def _drain_errors(ops):
    """Forget label errors flagged by an earlier test (raises nothing)."""
    with contextlib.suppress(ValueError):
        ops.check_errors()


@pytest.fixture
def ops():
    """The GPU backend's (shared) ops; its GEMM routes are restored afterwards."""
    ops = gn.get_backend("gpu").ops
    saved = ops.gemm_routes
    _drain_errors(ops)
    yield ops
    ops.gemm_routes = saved
    _drain_errors(ops)


@pytest.fixture(params=ROUTES)
def route(request, ops):
    """Every GEMM of ``ops`` through one route (restored by the ``ops`` fixture)."""
    ops.gemm_routes = ((math.inf, request.param),)
    return request.param


FALLBACKS = ("linear_forward", "linear_relu_forward", "linear_backward",
             "linear_relu_backward", "softmax_cross_entropy", "sgd_update", "adam_update")


@contextlib.contextmanager
def fused_only():
    """Inside the block every reference op raises: a GPU op that falls back fails the test.
    (Compute NumPy references before entering: ``REF`` is a ``NumpyOps`` too.)"""
    with pytest.MonkeyPatch.context() as mp:
        for name in FALLBACKS:
            def refuse(self, *args, _name=name, **kwargs):
                raise AssertionError(f"the reference fallback NumpyOps.{_name} ran where the "
                                     f"fused GPU kernels were expected")
            mp.setattr(NumpyOps, name, refuse)
        yield


@contextlib.contextmanager
def cublas_refused():
    """Inside the block ``cupy.matmul`` / ``cupy.dot`` (the cuBLAS route) raise."""
    def refuse(*args, **kwargs):
        raise AssertionError("cuBLAS (cupy.matmul / cupy.dot) ran on the tiled GEMM route")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cupy, "matmul", refuse)
        mp.setattr(cupy, "dot", refuse)
        yield


def on_device(values, layout):
    """``(array, gaps)``: ``values`` on the device as ``"contiguous"``, ``"transposed"``
    (Fortran order) or ``"strided"`` (every other element of the last axis of a buffer
    whose gaps, returned as ``gaps``, hold SENTINEL); one element is always contiguous."""
    if layout == "contiguous" or values.size <= 1:
        return cupy.asarray(values), None
    if layout == "transposed":
        array = cupy.empty(values.shape[::-1], dtype=values.dtype).T
        array[...] = cupy.asarray(values)
        assert not array.flags.c_contiguous
        return array, None
    buf = cupy.full(values.shape[:-1] + (2 * values.shape[-1],), SENTINEL, dtype=values.dtype)
    array = buf[..., ::2]
    array[...] = cupy.asarray(values)
    assert not array.flags.c_contiguous
    return array, buf[..., 1::2]


def with_routes(ops, routes, check):
    """Run ``check()`` once per GEMM route."""
    for route_name in routes:
        ops.gemm_routes = ((math.inf, route_name),)
        check()


# -- reference fallbacks: float64 and non-contiguous arrays for every op ---------------------
SGD_CONFIGS = {  # momentum, nesterov, weight_decay
    "sgd": (0.0, False, 0.0), "sgd-momentum": (0.9, False, 0.0),
    "sgd-nesterov-decay": (0.9, True, 1e-2), "sgd-decay": (0.0, False, 1e-2),
}
ADAM_CONFIGS = {"adam": (False, 0.0), "adam-l2": (False, 1e-2), "adamw": (True, 1e-2)}
LINEAR_OPS = ("linear_forward", "linear_relu_forward", "linear_backward", "linear_relu_backward")

# The arrays each op takes (with their number of dimensions) and those it writes.
ARRAYS = {
    "linear_forward": {"x": 2, "weight": 2, "bias": 1, "out": 2},
    "linear_relu_forward": {"x": 2, "weight": 2, "bias": 1, "out": 2},
    "linear_backward": {"grad_out": 2, "x": 2, "weight": 2, "grad_weight": 2, "grad_bias": 1,
                        "grad_x": 2},
    "linear_relu_backward": {"grad_out": 2, "out": 2, "x": 2, "weight": 2, "grad_weight": 2,
                             "grad_bias": 1, "grad_z": 2, "grad_x": 2},
    "softmax_cross_entropy": {"logits": 2, "labels": 1, "grad": 2},
    **{name: {"param": 1, "grad": 1, **({"velocity": 1} if config[0] else {})}
       for name, config in SGD_CONFIGS.items()},
    **{name: {"param": 1, "grad": 1, "exp_avg": 1, "exp_avg_sq": 1} for name in ADAM_CONFIGS},
    "grad_norm": {"grad": 1, "out": 0},
    "clip_by_norm": {"grad": 1, "norm": 0},
    "gather_batch": {"X": 2, "y": 1, "order": 1, "cursor": 1, "x_out": 2, "y_out": 1},
    "end_step": {"cursor": 1, "loss": 0, "correct": 0, "losses": 1, "hits": 1},
}
WRITTEN = {"out", "grad_weight", "grad_bias", "grad_x", "grad_z", "grad", "param", "velocity",
           "exp_avg", "exp_avg_sq", "x_out", "y_out", "cursor", "losses", "hits"}


def make_case(op, dtype, rng):
    """``(arrays, call)``: host arrays for ``op`` (outputs poisoned with NaN) and
    ``call(ops, arrays, xp)`` running it (3 steps for the optimizers)."""
    batch, n_in, n_out, n = 10, 12, 8, 1030

    def f(*shape):
        return normal(rng, *shape, dtype=dtype)

    def nan(*shape):
        return np.full(shape, np.nan, dtype)

    if op in ("linear_forward", "linear_relu_forward"):
        arrays = dict(x=f(batch, n_in), weight=f(n_out, n_in), bias=f(n_out),
                      out=nan(batch, n_out))

        def call(ops, a, xp):
            getattr(ops, op)(a["x"], a["weight"], a["bias"], a["out"])
    elif op == "linear_backward":
        arrays = dict(grad_out=f(batch, n_out), x=f(batch, n_in), weight=f(n_out, n_in),
                      grad_weight=nan(n_out, n_in), grad_bias=nan(n_out), grad_x=nan(batch, n_in))

        def call(ops, a, xp):
            ops.linear_backward(a["grad_out"], a["x"], a["weight"], a["grad_weight"],
                                a["grad_bias"], a["grad_x"])
    elif op == "linear_relu_backward":
        arrays = dict(grad_out=f(batch, n_out), out=np.maximum(f(batch, n_out), 0),
                      x=f(batch, n_in), weight=f(n_out, n_in), grad_weight=nan(n_out, n_in),
                      grad_bias=nan(n_out), grad_z=nan(batch, n_out), grad_x=nan(batch, n_in))

        def call(ops, a, xp):
            ops.linear_relu_backward(a["grad_out"], a["out"], a["x"], a["weight"],
                                     a["grad_weight"], a["grad_bias"], a["grad_z"], a["grad_x"])
    elif op == "softmax_cross_entropy":
        arrays = dict(logits=f(batch, n_out) * 3, labels=rng.integers(0, n_out, size=batch),
                      grad=nan(batch, n_out))

        def call(ops, a, xp):
            return ops.softmax_cross_entropy(a["logits"], a["labels"], a["grad"])
    elif op == "grad_norm":
        arrays = dict(grad=f(n), out=nan())

        def call(ops, a, xp):
            ops.grad_norm(a["grad"], 2.0, a["out"])
    elif op == "clip_by_norm":
        arrays = dict(grad=f(n), norm=np.asarray(40.0, dtype))

        def call(ops, a, xp):
            ops.clip_by_norm(a["grad"], 5.0, a["norm"])
    elif op == "gather_batch":
        rows = 3 * batch
        arrays = dict(X=f(rows, n_in), y=rng.integers(0, n_out, size=rows),
                      order=rng.permutation(rows), cursor=np.array([batch]),
                      x_out=nan(batch, n_in), y_out=np.full(batch, -1))

        def call(ops, a, xp):
            ops.gather_batch(a["X"], a["y"], a["order"], a["cursor"], a["x_out"], a["y_out"])
    elif op == "end_step":
        arrays = dict(cursor=np.array([2 * batch]), loss=np.asarray(0.75, dtype),
                      correct=np.asarray(7), losses=np.full(4, -1.0), hits=np.full(4, -1))

        def call(ops, a, xp):
            ops.end_step(a["cursor"], batch, batch, a["loss"], a["correct"], a["losses"],
                         a["hits"])
    elif op in SGD_CONFIGS:
        momentum, nesterov, weight_decay = SGD_CONFIGS[op]
        arrays = dict(param=f(n), grad=f(n), **({"velocity": f(n)} if momentum else {}))

        def call(ops, a, xp):
            lr = xp.asarray([0.05], dtype=a["param"].dtype)
            for _ in range(3):
                ops.sgd_update(a["param"], a["grad"], a.get("velocity"), lr,
                               momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    else:
        decoupled, weight_decay = ADAM_CONFIGS[op]
        arrays = dict(param=f(n), grad=f(n), exp_avg=f(n), exp_avg_sq=np.abs(f(n)))

        def call(ops, a, xp):
            lr = xp.asarray([0.05], dtype=a["param"].dtype)
            step = xp.zeros(1, dtype=a["param"].dtype)
            for _ in range(3):
                step += 1
                ops.adam_update(a["param"], a["grad"], a["exp_avg"], a["exp_avg_sq"], lr, step,
                                beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay,
                                decoupled=decoupled)
    return arrays, call


def check_against_reference(ops, op, dtype, layouts):
    """Run ``op`` on NumPy copies and on the device (``layouts``: argument -> layout); the
    written arrays must match, inputs and the gaps of strided views must be untouched."""
    arrays, call = make_case(op, dtype, np.random.default_rng(17))
    want = {k: v.copy() for k, v in arrays.items()}
    want_result = call(REF, want, np)
    dev, gaps = {}, {}
    for k, v in arrays.items():
        dev[k], gap = on_device(v, layouts.get(k, "contiguous"))
        if gap is not None:
            gaps[k] = gap
    got_result = call(ops, dev, cupy)
    ops.check_errors()
    rtol = 1e-10 if dtype == np.float64 else (1e-4 if op in LINEAR_OPS else 1e-5)
    for k, v in arrays.items():
        assert dev[k].dtype == v.dtype, k
        if k in WRITTEN:
            assert_close(dev[k], want[k], rtol, f"{op}: {k}")
        else:
            assert np.array_equal(host(dev[k]), v), f"{op} changed its input {k}"
    for k, gap in gaps.items():
        assert (host(gap) == SENTINEL).all(), f"{op} wrote between the elements of strided {k}"
    if want_result is not None:
        (loss, correct), (want_loss, want_correct) = got_result, want_result
        assert loss.shape == () and loss.dtype == dtype
        assert_close(loss, want_loss, rtol, f"{op}: loss")
        assert int(correct) == int(want_correct)


NON_CONTIGUOUS = [
    pytest.param(op, arg, layout, id=f"{op}-{arg}-{layout}")
    for op, args in ARRAYS.items()
    for arg, ndim in [*args.items(), ("all", 1)] if ndim and arg != "cursor"
    for layout in (("strided", "transposed") if ndim == 2 else ("strided",))
]


@gpu
@pytest.mark.parametrize("op,arg,layout", NON_CONTIGUOUS)
def test_non_contiguous_arrays_match_the_reference(ops, op, arg, layout):
    """One argument (or all) non-contiguous: the op must fall back (or handle the strides),
    never read or write the array as if it were contiguous."""
    layouts = {name: layout for name in ARRAYS[op]} if arg == "all" else {arg: layout}
    routes = ROUTES if op in LINEAR_OPS else ("cublas",)
    with_routes(ops, routes, lambda: check_against_reference(ops, op, np.float32, layouts))


@gpu
@pytest.mark.parametrize("op", list(ARRAYS))
def test_float64_arrays_match_the_reference(ops, op):
    """float64 (gradient checks, float64 checkpoints) takes the reference code on CuPy."""
    routes = ROUTES if op in LINEAR_OPS else ("cublas",)
    with_routes(ops, routes, lambda: check_against_reference(ops, op, np.float64, {}))


# -- the fused kernels on real parameter views -----------------------------------------------
# Float offsets of each parameter in the flat buffer (weights before biases, layer order).
MODELS = {
    "3-7-5": ((3, 7, 5), {"0.weight": 0, "0.bias": 21, "2.weight": 28, "2.bias": 63}),
    "2-7-8-4": ((2, 7, 8, 4), {"0.weight": 0, "0.bias": 14, "2.weight": 21, "2.bias": 77,
                               "4.weight": 85, "4.bias": 117}),
}
OPTIMIZERS = {
    "sgd-nesterov": lambda p: gn.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True,
                                           weight_decay=1e-2),
    "adamw": lambda p: gn.optim.AdamW(p, lr=1e-2, weight_decay=1e-2),
}


def mlp(widths, device):
    """Linear layers of ``widths`` with ReLUs between, seeded, on ``device``."""
    gn.manual_seed(0)
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [gn.Linear(n_in, n_out), gn.ReLU()]
    return gn.Sequential(*layers[:-1]).to(device)


def check_layout(model, offsets):
    """The premise: parameters at ``offsets`` (floats) of a 16-byte aligned flat buffer."""
    params = dict(model.named_parameters())
    base = params["0.weight"].data.data.ptr
    assert base % 16 == 0
    got = {name: (p.data.data.ptr - base) // 4 for name, p in params.items()}
    assert got == offsets, "the flat parameter layout changed: update this test's premise"
    assert all(params[name].data.data.ptr % 16 for name in offsets if name.endswith("bias"))


@gpu
@pytest.mark.parametrize("model_name", list(MODELS))
def test_fused_linear_ops_on_real_parameter_views(ops, route, model_name):
    """Forward and backward of each layer with the model's own (misaligned) weight, bias and
    gradient views as arguments; the backward runs last layer first, as in training, so a
    write past a view's end lands in an already checked neighbour."""
    widths, offsets = MODELS[model_name]
    model = mlp(widths, "gpu")
    check_layout(model, offsets)
    linears = [m for m in model.layers if isinstance(m, gn.Linear)]
    rng = np.random.default_rng(31)
    batch = 33
    cases = []
    for i, lin in enumerate(linears):
        relu = i < len(linears) - 1
        w, b = host(lin.weight.data), host(lin.bias.data)
        x, g = normal(rng, batch, lin.in_features), normal(rng, batch, lin.out_features)
        want = reference_linear(x, w, b, g, relu)
        got = {k: poisoned(v.shape) for k, v in want.items() if k in ("out", "gx", "gz")}
        cases.append((lin, relu, x, g, w, b, want, got))
    for p in model.parameters():
        p.grad.fill(np.nan)
    with fused_only():
        for lin, relu, x, g, w, b, want, got in cases:
            forward = ops.linear_relu_forward if relu else ops.linear_forward
            forward(cupy.asarray(x), lin.weight.data, lin.bias.data, got["out"])
        for lin, relu, x, g, w, b, want, got in reversed(cases):
            if relu:
                ops.linear_relu_backward(cupy.asarray(g), cupy.asarray(want["out"]),
                                         cupy.asarray(x), lin.weight.data, lin.weight.grad,
                                         lin.bias.grad, got["gz"], got["gx"])
            else:
                ops.linear_backward(cupy.asarray(g), cupy.asarray(x), lin.weight.data,
                                    lin.weight.grad, lin.bias.grad, got["gx"])
    for i, (lin, relu, x, g, w, b, want, got) in enumerate(cases):
        assert_close(got["out"], want["out"], 1e-5, f"layer {i} output")
        assert_close(lin.weight.grad, want["gw"], 1e-5, f"layer {i} weight grad")
        assert_close(lin.bias.grad, want["gb"], 1e-5, f"layer {i} bias grad")
        assert_close(got["gx"], want["gx"], 1e-5, f"layer {i} input grad")
        if relu:
            assert_close(got["gz"], want["gz"], 1e-5, f"layer {i} masked grad")
        assert np.array_equal(host(lin.weight.data), w) and np.array_equal(host(lin.bias.data), b)


def train_steps(widths, device, make_optimizer, x, y, steps=2):
    """A few full steps on ``device``: per step the logits, loss, gradients (poisoned before
    the backward) and each parameter's update."""
    model = mlp(widths, device)
    backend = gn.get_backend(device)
    optimizer = make_optimizer(model.parameters())
    loss_fn = gn.CrossEntropyLoss()
    xb, yb = backend.asarray(x), backend.asarray(y)
    record = []
    for _ in range(steps):
        before = model.state_dict()
        for p in model.parameters():
            p.grad.fill(np.nan)
        logits = model(xb)
        logits_host = host(logits).copy()
        loss = loss_fn(logits, yb)
        model.backward(loss_fn.backward(), input_grad=False)
        grads = {name: host(p.grad).copy() for name, p in model.named_parameters()}
        optimizer.step()
        after = model.state_dict()
        record.append({"logits": logits_host, "loss": float(loss), "grads": grads,
                       "updates": {name: after[name] - before[name] for name in after}})
    backend.ops.check_errors()
    return model, record


@gpu
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_training_steps_on_real_parameter_views_run_fused_and_match_the_cpu(
        ops, route, model_name, opt_name):
    widths, offsets = MODELS[model_name]
    rng = np.random.default_rng(41)
    x, y = normal(rng, 33, widths[0]), rng.integers(0, widths[-1], size=33)
    _, cpu = train_steps(widths, "cpu", OPTIMIZERS[opt_name], x, y)
    with fused_only():
        model, gpu_steps = train_steps(widths, "gpu", OPTIMIZERS[opt_name], x, y)
    check_layout(model, offsets)
    for step, (want, got) in enumerate(zip(cpu, gpu_steps), 1):
        assert_close(got["logits"], want["logits"], 1e-5, f"step {step} logits")
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        for name in want["grads"]:
            assert_close(got["grads"][name], want["grads"][name], 1e-5, f"step {step} {name}.grad")
            assert np.abs(want["updates"][name]).max() > 0, "a parameter did not move"
            assert_close(got["updates"][name], want["updates"][name], 1e-4,
                         f"step {step} update of {name}")


@gpu
@pytest.mark.parametrize("relu", [False, True])
def test_fused_linear_ops_on_misaligned_arrays_with_widths_multiple_of_4(ops, route, relu):
    """Widths of 16 and 8 would take float4 paths; every array is 4 bytes off 16."""
    rng = np.random.default_rng(43)
    batch, n_in, n_out = 33, 16, 8
    x, w, b, g = (normal(rng, batch, n_in), normal(rng, n_out, n_in), normal(rng, n_out),
                  normal(rng, batch, n_out))
    saved = np.maximum(normal(rng, batch, n_out), 0)
    want = {"out": np.empty((batch, n_out), np.float32), "gw": np.empty_like(w),
            "gb": np.empty_like(b), "gx": np.empty_like(x), "gz": np.empty_like(g)}
    (REF.linear_relu_forward if relu else REF.linear_forward)(x, w, b, want["out"])
    if relu:
        REF.linear_relu_backward(g, saved, x, w, want["gw"], want["gb"], want["gz"], want["gx"])
    else:
        REF.linear_backward(g, x, w, want["gw"], want["gb"], want["gx"])
    dev = {k: misaligned(v) for k, v in {"x": x, "w": w, "b": b, "g": g, "saved": saved}.items()}
    got = {k: misaligned(np.full(v.shape, np.nan, np.float32)) for k, v in want.items()}
    with fused_only():
        (ops.linear_relu_forward if relu else ops.linear_forward)(dev["x"], dev["w"], dev["b"],
                                                                  got["out"])
        if relu:
            ops.linear_relu_backward(dev["g"], dev["saved"], dev["x"], dev["w"], got["gw"],
                                     got["gb"], got["gz"], got["gx"])
        else:
            ops.linear_backward(dev["g"], dev["x"], dev["w"], got["gw"], got["gb"], got["gx"])
    for k in ("out", "gw", "gb", "gx") + (("gz",) if relu else ()):
        assert_close(got[k], want[k], 1e-5, k)


# -- batch 1 and batch 65,536 ----------------------------------------------------------------
@gpu
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("batch", [1, 65536])
def test_linear_ops_at_batch_1_and_65536(ops, route, batch, relu):
    rng = np.random.default_rng(47)
    n_in, n_out = 100, 64
    x, w, b, g = (normal(rng, batch, n_in), normal(rng, n_out, n_in), normal(rng, n_out),
                  normal(rng, batch, n_out))
    want = reference_linear(x, w, b, g, relu)
    dev = {k: cupy.asarray(v) for k, v in {"x": x, "w": w, "b": b, "g": g}.items()}
    got = {k: poisoned(v.shape) for k, v in want.items()}
    (ops.linear_relu_forward if relu else ops.linear_forward)(dev["x"], dev["w"], dev["b"],
                                                              got["out"])
    if relu:
        ops.linear_relu_backward(dev["g"], cupy.asarray(want["out"]), dev["x"], dev["w"],
                                 got["gw"], got["gb"], got["gz"], got["gx"])
    else:
        ops.linear_backward(dev["g"], dev["x"], dev["w"], got["gw"], got["gb"], got["gx"])
    for k in ("out", "gw", "gb", "gx") + (("gz",) if relu else ()):
        assert_close(got[k], want[k], 1e-4, k)


@gpu
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("classes", [10, 129])
@pytest.mark.parametrize("batch", [1, 65536])
def test_loss_at_batch_1_and_65536_with_int32_and_int64_labels(ops, batch, classes,
                                                               label_dtype):
    rng = np.random.default_rng(53)
    logits = normal(rng, batch, classes, scale=3.0)
    labels = rng.integers(0, classes, size=batch).astype(label_dtype)
    want_grad = np.empty_like(logits)
    want_loss, want_correct = REF.softmax_cross_entropy(logits, labels, want_grad)
    grad = poisoned(logits.shape)
    loss, correct = ops.softmax_cross_entropy(cupy.asarray(logits), cupy.asarray(labels), grad)
    ops.check_errors()
    assert loss.shape == () and loss.dtype == np.float32
    assert_close(loss, want_loss, 1e-5, "loss")
    assert int(correct) == int(want_correct)
    assert_close(grad, want_grad, 1e-5, "grad")


# -- labels: both widths, bad ones, NaN and infinite logits ---------------------------------
@gpu
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("path", ["fused", "float64", "check_labels"])
def test_bad_labels_name_the_first_bad_index_and_its_label(ops, path, label_dtype):
    """Bad labels in later blocks, the first not the smallest or the largest value: the error
    must name index 4097 and its label 99 (not the last index, not the smallest label)."""
    rng = np.random.default_rng(59)
    batch, classes = 5000, 10
    labels = rng.integers(0, classes, size=batch).astype(label_dtype)
    bad = [4097, 4500, 4999]
    labels[bad] = [99, 10, -3]
    if path == "check_labels":
        ops.check_labels(cupy.asarray(labels), classes)
    else:
        dtype = np.float32 if path == "fused" else np.float64
        logits = normal(rng, batch, classes, dtype=dtype)
        grad = poisoned(logits.shape, dtype)
        ops.softmax_cross_entropy(cupy.asarray(logits), cupy.asarray(labels), grad)
        if path == "fused":  # the good rows are right; the bad ones never index out of range
            good = np.setdiff1d(np.arange(batch), bad)
            want_grad = np.empty((good.size, classes), np.float32)
            REF.softmax_cross_entropy(logits[good], labels[good], want_grad)
            host_grad = host(grad)
            assert_close(host_grad[good], want_grad * (good.size / batch), 1e-5, "good rows")
            assert np.isfinite(host_grad[bad]).all()
    with pytest.raises(ValueError, match=r"label 99 at index 4097\D"):
        ops.check_errors()
    ops.check_errors()  # reported once, then cleared
    ops.check_labels(cupy.asarray(labels[:4000]), classes)
    ops.check_errors()  # good labels after an error report nothing


@gpu
@pytest.mark.parametrize("path", ["fused", "check_labels"])
def test_int64_labels_beyond_32_bits_are_bad_labels(ops, path):
    """2**32 truncated to 32 bits is 0, a valid class: int64 labels must be read whole."""
    rng = np.random.default_rng(61)
    labels = rng.integers(0, 10, size=300)
    labels[123], labels[200] = 2**32, 2**32 + 5
    if path == "check_labels":
        ops.check_labels(cupy.asarray(labels), 10)
    else:
        ops.softmax_cross_entropy(cupy.asarray(normal(rng, 300, 10)), cupy.asarray(labels),
                                  poisoned((300, 10)))
    with pytest.raises(ValueError, match=r"at index 123\D"):
        ops.check_errors()


SPECIAL_LOGITS = {  # value, where it goes in row 3
    "nan": (np.nan, "other"), "+inf": (np.inf, "other"), "+inf-at-label": (np.inf, "label"),
    "-inf-at-label": (-np.inf, "label"), "-inf": (-np.inf, "other"), "-inf-row": (-np.inf, "row"),
}


@gpu
@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("case", list(SPECIAL_LOGITS))
def test_nan_and_infinite_logits_against_the_reference(ops, case, classes):
    """Where the reference's loss is NaN or infinite the GPU's must be non-finite too (so
    training stops); a -inf off the label is finite and must match; other rows are unharmed."""
    rng = np.random.default_rng(67)
    batch, row = 64, 3
    logits = normal(rng, batch, classes, scale=3.0)
    labels = rng.integers(0, classes, size=batch)
    value, where = SPECIAL_LOGITS[case]
    if where == "label":
        logits[row, labels[row]] = value
    elif where == "other":
        logits[row, (labels[row] + 1) % classes] = value
    else:
        logits[row, :] = value
    want_grad = np.empty_like(logits)
    with np.errstate(all="ignore"):
        want_loss, want_correct = REF.softmax_cross_entropy(logits, labels, want_grad)
    grad = poisoned(logits.shape)
    loss, correct = ops.softmax_cross_entropy(cupy.asarray(logits), cupy.asarray(labels), grad)
    ops.check_errors()
    got_loss, want_loss = float(loss), float(want_loss)
    if np.isfinite(want_loss):
        assert got_loss == pytest.approx(want_loss, rel=1e-5)
        assert_close(grad, want_grad, 1e-5, "grad")
    else:
        assert not np.isfinite(got_loss), f"the reference loss is {want_loss}, the GPU's " \
                                          f"{got_loss}: a diverged run would go unnoticed"
    clean = np.arange(batch) != row
    assert_close(host(grad)[clean], want_grad[clean], 1e-5, "rows without special values")
    if case != "nan":  # NumPy's arg-max takes a NaN as the maximum; no contract there
        assert int(correct) == int(want_correct)


# -- the tiled GEMM route inside whole training runs ----------------------------------------
def blobs(samples=640, features=64, classes=10):
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((classes, features)).astype(np.float32)
    y = rng.integers(0, classes, size=samples)
    x = (centers[y] + 2.0 * rng.standard_normal((samples, features))).astype(np.float32)
    return x, y


def classifier(device):
    gn.manual_seed(0)
    return gn.Sequential(gn.Linear(64, 96), gn.ReLU(), gn.Linear(96, 48), gn.ReLU(),
                         gn.Linear(48, 10)).to(device)


def train_loop(device, x, y, steps=100, batch=32):
    """Fixed batches (no shuffle): the same run on any device; losses and final weights."""
    model = classifier(device)
    backend = gn.get_backend(device)
    optimizer = gn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                             weight_decay=1e-4)
    loss_fn = gn.CrossEntropyLoss()
    losses = []
    for step in range(steps):
        start = (step * batch) % len(x)
        xb, yb = backend.asarray(x[start:start + batch]), backend.asarray(y[start:start + batch])
        losses.append(loss_fn(model(xb), yb))
        model.backward(loss_fn.backward(), input_grad=False)
        optimizer.step()
    backend.ops.check_errors()
    return np.array([float(loss) for loss in losses]), model.state_dict()


def assert_states_close(got, want, rtol, what):
    for name in want:
        assert_close(got[name], want[name], rtol, f"{what}: {name}")


@gpu
def test_tiled_gemm_route_trains_like_cublas_and_the_cpu(ops):
    x, y = blobs()
    cpu_losses, cpu_state = train_loop("cpu", x, y)
    ops.gemm_routes = ((math.inf, "cublas"),)
    cublas_losses, cublas_state = train_loop("gpu", x, y)
    ops.gemm_routes = ((math.inf, "tiled"),)
    with cublas_refused():
        tiled_losses, tiled_state = train_loop("gpu", x, y)
    assert cpu_losses[-10:].mean() < 0.7 * cpu_losses[:10].mean(), "no learning: vacuous"
    np.testing.assert_allclose(cublas_losses, cpu_losses, rtol=1e-4)
    np.testing.assert_allclose(tiled_losses, cpu_losses, rtol=1e-4)
    np.testing.assert_allclose(tiled_losses, cublas_losses, rtol=1e-4)
    assert_states_close(tiled_state, cpu_state, 1e-4, "tiled vs cpu")
    assert_states_close(tiled_state, cublas_state, 1e-4, "tiled vs cublas")


@gpu
def test_fit_on_the_tiled_route_matches_the_cublas_route(ops):
    """``fit`` (device shuffles, validation, progress reads) with every GEMM tiled."""
    x, y = blobs()

    def run(route_name):
        ops.gemm_routes = ((math.inf, route_name),)
        model = classifier("gpu")
        optimizer = gn.optim.AdamW(model.parameters(), lr=1e-3)
        history = gn.fit(model, gn.CrossEntropyLoss(), optimizer, (x[:512], y[:512]),
                         val=(x[512:], y[512:]), epochs=3, batch_size=64, seed=0,
                         progress=False, verbose=False, graph="off")  # routes as set
        return history, model.state_dict()

    cublas_history, cublas_state = run("cublas")
    with cublas_refused():
        tiled_history, tiled_state = run("tiled")
    assert tiled_history["train_loss"][-1] < tiled_history["train_loss"][0]
    for column in ("train_loss", "val_loss"):
        np.testing.assert_allclose(tiled_history[column], cublas_history[column], rtol=1e-4)
    assert_states_close(tiled_state, cublas_state, 1e-4, "tiled vs cublas")


# -- no host synchronisation in a training step: record it as a CUDA graph ------------------
@gpu
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_a_training_step_records_as_a_cuda_graph_and_replays_like_eager_steps(
        ops, opt_name, relaxed_capture):
    """A step (forward, loss, backward, optimizer) recorded on a capturing stream, which
    refuses host synchronisation and cuBLAS (hence the tiled route), then replayed twice,
    interleaved with eager steps of an identical model, the learning rate halved before the
    second replay (the graph must read it, and the step count, from device memory).

    Allocation during the capture: the step allocates the loss and correct count it hands
    out (held below, so their memory stays the graph's). The eager steps between the replays
    allocate too: a buffer the step allocated and freed while recording would be reused by
    them and clobbered by the next replay, and the comparison would fail.
    """
    ops.gemm_routes = ((math.inf, "tiled"),)
    rng = np.random.default_rng(71)
    x = cupy.asarray(normal(rng, 64, 20))
    y = cupy.asarray(rng.integers(0, 10, size=64))

    def build():
        gn.manual_seed(0)
        model = gn.Sequential(gn.Linear(20, 32), gn.ReLU(), gn.Linear(32, 16), gn.ReLU(),
                              gn.Linear(16, 10)).to("gpu")
        return model, OPTIMIZERS[opt_name](model.parameters()), gn.CrossEntropyLoss()

    def step(model, optimizer, loss_fn):
        logits = model(x)
        loss = loss_fn(logits, y)
        grad = loss_fn.backward()
        model.backward(grad, input_grad=False)
        optimizer.step()
        return loss, (logits, grad, loss_fn.last_correct)  # everything handed out

    graphed, eager = build(), build()
    cupy.cuda.Device().synchronize()  # the models were made on the legacy default stream
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        for run in (graphed, eager):
            step(*run)  # warm-up: every kernel compiled, every buffer allocated
        stream.synchronize()
        start = graphed[0].state_dict()
        stream.begin_capture()
        try:
            with relaxed_capture():
                graph_loss, handed_out = step(*graphed)
        except Exception as exc:
            with contextlib.suppress(Exception):
                stream.end_capture()
            pytest.fail(f"a training step cannot be recorded as a CUDA graph (a host "
                        f"synchronisation or an uncapturable call inside it): {exc!r}")
        try:
            graph = stream.end_capture()
        except Exception as exc:
            pytest.fail(f"recording a training step was invalidated (a host synchronisation "
                        f"inside it?): {exc!r}")
        recorded = graphed[0].state_dict()
        assert all(np.array_equal(recorded[k], start[k]) for k in start), \
            "the step ran while it was being recorded"
        results = []
        for replay in range(2):
            if replay == 1:
                for _, optimizer, _ in (graphed, eager):
                    optimizer.lr = optimizer.lr / 2
            graph.launch(stream=stream)
            stream.synchronize()
            graph_result = (float(graph_loss), graphed[0].state_dict())
            eager_loss, _ = step(*eager)
            results.append((graph_result, (float(eager_loss), eager[0].state_dict())))
        stream.synchronize()
    ops.check_errors()
    first_state = results[0][0][1]
    assert all(not np.array_equal(first_state[k], start[k]) for k in start if "weight" in k), \
        "the replayed step did not change the weights"
    for replay, ((g_loss, g_state), (e_loss, e_state)) in enumerate(results, 1):
        assert g_loss == pytest.approx(e_loss, rel=1e-6), f"replay {replay}: loss"
        assert_states_close(g_state, e_state, 1e-6, f"replay {replay} vs eager step")


# -- Adam and AdamW against PyTorch over 1,000 steps ----------------------------------------
@gpu
@pytest.mark.parametrize("kind,weight_decay", [("Adam", 0.0), ("Adam", 1e-2), ("AdamW", 1e-2)])
def test_adam_matches_pytorch_over_1000_steps(ops, kind, weight_decay):
    """The fused kernel against ``torch.optim.Adam``/``AdamW`` (CPU, float32, bias corrections
    from Python floats) to 1e-6 of the parameter scale. Gradients keep their sign per element
    so the steps add up (the parameters move ~1): a relative error of the step size that is
    the same every step (float32 ``1 - powf(beta2, t)``, or ``beta2`` rounded to float32
    before ``1 - beta2**t``: ~6e-6) then grows to ~3e-6 of the scale; rounding noise of a
    correct kernel, which changes sign from step to step, stays near 3e-7 (emulated in NumPy).
    """
    settings = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    assert_matches_torch_over_1000_steps(
        73, lambda torch, params: getattr(torch.optim, kind)(params, foreach=False, **settings),
        lambda params: getattr(gn.optim, kind)(params, **settings), kind)


def assert_matches_torch_over_1000_steps(seed, torch_optimizer, gpunet_optimizer, name):
    """1,000 steps of gradients that keep their sign per element (the parameters move ~1)
    through ``torch_optimizer(torch, [tensor])`` (CPU, float32) and the fused
    ``gpunet_optimizer([param])`` on the device: they must end within 1e-6 of the parameter
    scale."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    n, steps = 4099, 1000
    start = normal(rng, n, scale=0.5)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    grads = (sign * (1 + 0.5 * rng.uniform(-1, 1, size=(steps, n)))).astype(np.float32)

    reference = torch.tensor(start.copy(), requires_grad=True)
    reference_optimizer = torch_optimizer(torch, [reference])
    for g in grads:
        reference.grad = torch.from_numpy(g.copy())
        reference_optimizer.step()
    want = reference.detach().numpy().copy()

    param = gn.Parameter(cupy.asarray(start))
    optimizer = gpunet_optimizer([param])
    device_grads = cupy.asarray(grads)
    with fused_only():
        for t in range(steps):
            param.grad[...] = device_grads[t]
            optimizer.step()
    got = host(param.data)
    scale = float(np.abs(want).max())
    assert np.abs(want - start).max() > 0.5, "the parameters barely moved: a vacuous test"
    error = float(np.abs(got - want).max())
    assert np.isfinite(got).all() and error <= 1e-6 * scale, (
        f"GPU {name} is {error:.3g} ({error / scale:.2g} of the parameter scale {scale:.3g}) "
        f"away from torch.optim.{name} after {steps} steps; allowed 1e-6 of the scale")


# -- SGD against PyTorch over 1,000 steps ---------------------------------------------------
@gpu
@pytest.mark.parametrize("momentum,nesterov,weight_decay",
                         [(0.0, False, 0.0), (0.9, False, 1e-2), (0.9, True, 1e-2)])
def test_sgd_matches_pytorch_over_1000_steps(ops, momentum, nesterov, weight_decay):
    """The fused SGD kernel against ``torch.optim.SGD`` (CPU, float32) to 1e-6 of the
    parameter scale, gradients keeping their sign per element so the steps add up (the
    parameters move ~1 and momentum builds); a wrong momentum, decay or Nesterov term is a
    relative error of every step and grows far past that."""
    settings = dict(lr=1e-3, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    assert_matches_torch_over_1000_steps(
        83, lambda torch, params: torch.optim.SGD(params, foreach=False, **settings),
        lambda params: gn.optim.SGD(params, **settings), "SGD")


# -- past the int32 index range (last in the file: ~20 GB each, a crash ends the session) ---
BIG_ROWS = 2**27 + 3  # x 16 columns: 2**31 + 48 elements, more than int32 indices reach
BIG_COLS = 16
CHUNK = 2**24         # rows (or elements) per check: every CuPy call below stays small
CLEAR_INDEX_ERROR = re.compile(
    r"int32|32-bit|32 bit|2\*\*31|2\^31|2147483647|index range|too (large|long|many)", re.I)


@pytest.fixture
def big_ops():
    """A fresh ``CupyOps`` (its workspace dies with the test); device memory freed after."""
    if on_standin():
        pytest.skip("needs a real card's memory: each case holds ~20 GB of arrays, which the "
                    "stand-in would take from the host")
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    free = cupy.cuda.runtime.memGetInfo()[0]
    if free < 48 * 2**30:
        pytest.skip(f"needs 48 GiB of free device memory, {free / 2**30:.0f} GiB free")
    ops = type(gn.get_backend("gpu").ops)()
    yield ops
    del ops
    pool.free_all_blocks()


def chunks(n):
    for start in range(0, n, CHUNK):
        yield start, min(start + CHUNK, n)


def correct_or_clear_error(call):
    """Run ``call``: True when it ran (check the values), False when it refused the shape
    with a clear error (the accepted alternative to a correct fallback)."""
    try:
        call()
    except (ValueError, OverflowError, NotImplementedError) as exc:
        assert CLEAR_INDEX_ERROR.search(str(exc)), f"unclear error past int32 indices: {exc!r}"
        return False
    return True


@gpu
def test_loss_past_the_int32_index_range(big_ops):
    rows, classes = BIG_ROWS, BIG_COLS
    logits = cupy.empty((rows, classes), np.float32)
    grad = cupy.empty((rows, classes), np.float32)
    for a, b in chunks(rows):
        logits[a:b] = 0
        grad[a:b] = np.nan
    labels = cupy.zeros(rows, np.int32)
    logits[-1, 3] = 5.0  # the last row differs: a wrapped index reads or writes another row
    labels[-1] = 3
    result = []
    if not correct_or_clear_error(
            lambda: result.extend(big_ops.softmax_cross_entropy(logits, labels, grad))):
        return
    big_ops.check_errors()
    last = np.zeros(classes)
    last[3] = 5.0
    p = np.exp(last - last.max())
    p /= p.sum()
    want_loss = ((rows - 1) * np.log(classes) - np.log(p[3])) / rows
    assert float(result[0]) == pytest.approx(want_loss, rel=1e-5)
    assert int(result[1]) == rows  # ties take the first index, the label of every row but one
    g_label, g_other = (1 / classes - 1) / rows, (1 / classes) / rows
    tol = 1e-5 * abs(g_label)
    for a, b in chunks(rows - 1):
        assert float(cupy.abs(grad[a:b, 0] - g_label).max()) <= tol, f"rows {a}:{b}"
        assert float(cupy.abs(grad[a:b, 1:] - g_other).max()) <= tol, f"rows {a}:{b}"
    onehot = np.eye(classes)[3]
    assert_close(grad[-1], (p - onehot) / rows, 1e-5, "last row")


@gpu
@pytest.mark.parametrize("route_name", ROUTES)
def test_linear_relu_forward_past_the_int32_index_range(big_ops, route_name):
    big_ops.gemm_routes = ((math.inf, route_name),)
    rows, n_in, n_out = BIG_ROWS, 4, BIG_COLS
    rng = np.random.default_rng(79)
    w, b = normal(rng, n_out, n_in), normal(rng, n_out)
    x = cupy.empty((rows, n_in), np.float32)
    out = cupy.empty((rows, n_out), np.float32)
    for a, c in chunks(rows):
        x[a:c] = 0
        x[a:c, 0] = 1
        out[a:c] = np.nan
    x[-1, 0], x[-1, 1] = 0, 1  # the last row differs
    if not correct_or_clear_error(
            lambda: big_ops.linear_relu_forward(x, cupy.asarray(w), cupy.asarray(b), out)):
        return
    row, last = np.maximum(w[:, 0] + b, 0), np.maximum(w[:, 1] + b, 0)
    tol = 1e-5 * max(float(np.abs(row).max()), 1e-30)
    row_dev = cupy.asarray(row)
    for a, c in chunks(rows - 1):
        assert float(cupy.abs(out[a:c] - row_dev).max()) <= tol, f"rows {a}:{c}"
    assert_close(out[-1], last, 1e-5, "last row")


@gpu
def test_sgd_update_past_the_int32_index_range(big_ops):
    n = 2**31 + 5
    param = cupy.empty(n, np.float32)
    grad = cupy.empty(n, np.float32)
    for a, b in chunks(n):
        param[a:b] = 1.0
        grad[a:b] = 2.0
    grad[-1] = 4.0  # the last element differs
    lr = cupy.asarray([0.25], np.float32)
    if not correct_or_clear_error(lambda: big_ops.sgd_update(
            param, grad, None, lr, momentum=0.0, weight_decay=0.0, nesterov=False)):
        return
    for a, b in chunks(n - 1):
        assert float(cupy.abs(param[a:b] - 0.5).max()) == 0.0, f"elements {a}:{b}"
    assert float(param[-1]) == 0.0 and float(grad[-1]) == 4.0
