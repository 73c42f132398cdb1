"""The fused GPU ops against the NumPy reference: fresh random inputs, poisoned outputs.

Tolerances (float32): elementwise ops and reductions 1e-5, GEMM-based results 1e-4, both
relative to the largest reference magnitude. Sizes include inputs larger than one grid of
the grid-stride kernels, odd widths and misaligned views (the scalar paths).
"""
import inspect
import math

import numpy as np
import pytest

import gpunet as gn
from standin import active as on_standin
from gpunet.ops.numpy_ops import NumpyOps

cupy = pytest.importorskip("cupy")
from gpunet.ops import cupy_ops  # noqa: E402  (needs cupy)
from gpunet.ops.cupy_ops import CupyOps  # noqa: E402
from gpu_arrays import REF, assert_close, misaligned, normal, poisoned  # noqa: E402

gpu = pytest.mark.gpu
ROUTES = ("cublas", "tiled")


def test_cupy_ops_has_the_numpy_ops_signatures():
    public = [n for n, f in inspect.getmembers(NumpyOps, inspect.isfunction)
              if not n.startswith("_")]
    assert public
    for name in public:
        assert inspect.signature(getattr(CupyOps, name)) == \
            inspect.signature(getattr(NumpyOps, name)), name
    extra = {n for n, f in inspect.getmembers(CupyOps, inspect.isfunction)
             if not n.startswith("_")} - set(public)
    assert extra <= {"gemm_route"}, extra


def test_no_instance_attribute_hides_a_class_attribute():
    """An instance attribute named like a method (``self._scratch = {}`` hid
    ``NumpyOps._scratch()``) breaks every fallback that calls it: none may exist."""
    for ops in (CupyOps(), NumpyOps(np), NumpyOps(cupy)):  # no device needed to construct
        clashes = {name for name in vars(ops)
                   if any(name in vars(cls) for cls in type(ops).__mro__)}
        assert not clashes, f"{type(ops).__name__} instance attributes hide {clashes}"


def test_error_word_decodes_index_and_label_without_wrapping():
    from gpunet.ops.launchers import softmax_xent as sx

    def word(index, label):  # the layout record_bad_label writes (softmax_xent.cu)
        half = 1 << (sx.LABEL_BITS - 1)
        return (index << sx.LABEL_BITS) | (max(-half, min(half - 1, label)) + half)

    assert sx.decode_error(word(5, 10)) == (5, 10, False)
    assert sx.decode_error(word(0, -1)) == (0, -1, False)
    assert sx.decode_error(word(2**33 + 7, 3)) == (2**33 + 7, 3, False)  # past 2^32 labels
    assert sx.decode_error(word(3, 10**9)) == (3, 2**23 - 1, True)
    assert sx.decode_error(word(sx.MAX_INDEX - 1, -10**9)) == (sx.MAX_INDEX - 1, -2**23, True)
    assert word(sx.MAX_INDEX - 1, 2**23 - 1) < int(sx.NO_ERROR)


def test_gemm_route_takes_the_first_bound_that_fits_else_cublas():
    ops = CupyOps.__new__(CupyOps)  # no device needed to ask for a route
    ops.gemm_routes = ()
    assert ops.gemm_route(65536, 512, 784) == "cublas"
    assert {route for _, route in cupy_ops.GEMM_ROUTES} <= {"cublas", "tiled"}
    ops.gemm_routes = ((1000, "tiled"), (10**6, "cublas"), (math.inf, "tiled"))
    assert [ops.gemm_route(*s) for s in [(10, 10, 10), (10, 100, 100), (100, 100, 101)]] \
        == ["tiled", "cublas", "tiled"]


# -- helpers -------------------------------------------------------------------------------
def make_ops(route="cublas"):
    ops = CupyOps()
    ops.gemm_routes = ((math.inf, route),)
    return ops


# -- linear layers -------------------------------------------------------------------------
LINEAR_SHAPES = [(1, 7, 5), (33, 100, 10), (300, 784, 512), (129, 64, 1), (8200, 64, 512)]


@gpu
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("batch,n_in,n_out", LINEAR_SHAPES)
def test_linear_forward(rng, route, relu, with_bias, batch, n_in, n_out):
    x, w, b = normal(rng, batch, n_in), normal(rng, n_out, n_in), normal(rng, n_out)
    bias = b if with_bias else None
    want = np.empty((batch, n_out), np.float32)
    out = poisoned((batch, n_out))
    ops = make_ops(route)
    forward = "linear_relu_forward" if relu else "linear_forward"
    getattr(REF, forward)(x, w, bias, want)
    got = getattr(ops, forward)(cupy.asarray(x), cupy.asarray(w),
                                None if bias is None else cupy.asarray(bias), out)
    assert got is out
    assert_close(out, want, 1e-4)


@gpu
@pytest.mark.parametrize("relu", [False, True])
def test_bias_act_scalar_path_on_misaligned_output(rng, relu):
    x, w, b = normal(rng, 50, 30), normal(rng, 64, 30), normal(rng, 64)
    want = np.empty((50, 64), np.float32)
    out = misaligned(np.full((50, 64), np.nan, np.float32))
    forward = "linear_relu_forward" if relu else "linear_forward"
    getattr(REF, forward)(x, w, b, want)
    getattr(make_ops(), forward)(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b), out)
    assert_close(out, want, 1e-4)


BACKWARD_SHAPES = [(1, 3, 2), (37, 33, 17), (256, 784, 512), (5000, 40, 1), (3000, 65, 100)]


@gpu
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_bias,input_grad", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("batch,n_in,n_out", BACKWARD_SHAPES)
def test_linear_backward(rng, route, relu, with_bias, input_grad, batch, n_in, n_out):
    x, w, g = normal(rng, batch, n_in), normal(rng, n_out, n_in), normal(rng, batch, n_out)
    out = np.maximum(normal(rng, batch, n_out), 0)  # a saved ReLU output: about half zeros
    want = {"gw": np.empty_like(w), "gb": np.empty(n_out, np.float32) if with_bias else None,
            "gx": np.empty_like(x) if input_grad else None, "gz": np.empty_like(g)}
    got = {k: None if v is None else poisoned(v.shape) for k, v in want.items()}
    dev = {k: cupy.asarray(v) for k, v in {"x": x, "w": w, "g": g, "out": out}.items()}
    ops = make_ops(route)
    if relu:
        REF.linear_relu_backward(g, out, x, w, want["gw"], want["gb"], want["gz"], want["gx"])
        ops.linear_relu_backward(dev["g"], dev["out"], dev["x"], dev["w"], got["gw"],
                                 got["gb"], got["gz"], got["gx"])
        assert_close(got["gz"], want["gz"], 1e-5)
    else:
        REF.linear_backward(g, x, w, want["gw"], want["gb"], want["gx"])
        ops.linear_backward(dev["g"], dev["x"], dev["w"], got["gw"], got["gb"], got["gx"])
    assert_close(got["gw"], want["gw"], 1e-4)
    if with_bias:
        assert_close(got["gb"], want["gb"], 1e-5)
    if input_grad:
        assert_close(got["gx"], want["gx"], 1e-4)


@gpu
@pytest.mark.parametrize("route", ROUTES)
def test_empty_batch_gives_empty_outputs_and_zero_parameter_grads(rng, route):
    x, w, b = (cupy.empty((0, 6), np.float32), cupy.asarray(normal(rng, 5, 6)),
               cupy.asarray(normal(rng, 5)))
    ops = make_ops(route)
    out = ops.linear_relu_forward(x, w, b, poisoned((0, 5)))
    gw, gb = poisoned((5, 6)), poisoned((5,))
    ops.linear_relu_backward(out, out, x, w, gw, gb, poisoned((0, 5)), poisoned((0, 6)))
    assert_close(gw, np.zeros((5, 6), np.float32), 1e-5)
    assert_close(gb, np.zeros(5, np.float32), 1e-5)


@gpu
def test_bias_grad_is_deterministic(rng):
    g = cupy.asarray(normal(rng, 7000, 300))
    ops = make_ops()
    results = []
    for _ in range(3):
        gb = poisoned((300,))
        ops.linear_backward(g, g[:, :5].copy(), cupy.ones((300, 5), np.float32),
                            poisoned((300, 5)), gb)
        results.append(cupy.asnumpy(gb))
    assert all(np.array_equal(results[0], r) for r in results[1:])


# -- softmax cross-entropy -------------------------------------------------------------------
@gpu
@pytest.mark.parametrize("classes", [1, 10, 33, 1000])
@pytest.mark.parametrize("batch", [1, 7, 300, 40000])
@pytest.mark.parametrize("scale", [1.0, 1e4, 1e30, 1e-30])
def test_softmax_cross_entropy(rng, classes, batch, scale):
    if batch * classes > 4_000_000:
        batch = 4_000_000 // classes
    logits = normal(rng, batch, classes, scale=scale)
    labels = rng.integers(0, classes, size=batch)
    want_grad = np.empty_like(logits)
    want_loss, want_correct = REF.softmax_cross_entropy(logits, labels, want_grad)
    ops = make_ops()
    grad = poisoned(logits.shape)
    loss, correct = ops.softmax_cross_entropy(cupy.asarray(logits), cupy.asarray(labels), grad)
    ops.check_errors()
    assert loss.shape == () and loss.dtype == np.float32
    assert_close(loss, want_loss, 1e-5)
    assert int(correct) == int(want_correct)
    assert_close(grad, want_grad, 1e-5)


@gpu
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64, np.uint8])
def test_softmax_ties_take_the_first_index_and_any_int_labels_work(rng, label_dtype):
    logits = rng.integers(0, 3, size=(500, 10)).astype(np.float32)  # many ties
    labels = rng.integers(0, 10, size=500).astype(label_dtype)
    want_grad = np.empty_like(logits)
    want_loss, want_correct = REF.softmax_cross_entropy(logits, labels, want_grad)
    grad = poisoned(logits.shape)
    loss, correct = make_ops().softmax_cross_entropy(cupy.asarray(logits),
                                                     cupy.asarray(labels), grad)
    assert int(correct) == int(want_correct)
    assert_close(loss, want_loss, 1e-5)
    assert_close(grad, want_grad, 1e-5)


@gpu
def test_out_of_range_label_raises_from_check_errors(rng):
    ops = make_ops()
    logits = cupy.asarray(normal(rng, 20, 10))
    labels = cupy.asarray(rng.integers(0, 10, size=20))
    labels[9] = -1
    labels[5] = 10
    grad = poisoned((20, 10))
    loss, _ = ops.softmax_cross_entropy(logits, labels, grad)
    host_grad = cupy.asnumpy(grad)
    assert (host_grad[[5, 9]] == 0).all() and np.isfinite(host_grad).all()
    with pytest.raises(ValueError, match=r"label 10 at index 5 .*\[0, 10\)"):
        ops.check_errors()
    ops.check_errors()  # the flag was cleared by the raise
    ops.check_labels(labels, 10)
    with pytest.raises(ValueError, match=r"label 10 at index 5"):
        ops.check_errors()
    ops.check_labels(cupy.asarray([0, 3, -7]), 4)
    with pytest.raises(ValueError, match=r"label -7 at index 2 .*\[0, 4\)"):
        ops.check_errors()


# -- optimizers ----------------------------------------------------------------------------
OPT_SIZES = [1, 7, 4099, 5_000_000]


def _run_updates(ops, arrays, update, steps, xp):
    lr, step = xp.asarray([0.05], np.float32), xp.zeros(1, np.float32)
    for _ in range(steps):
        step += 1
        update(ops, arrays, lr, step)
    return arrays


def _check_update(rng, n, update, buffers, misalign=False):
    host = {"param": normal(rng, n), "grad": normal(rng, n)}
    host.update({b: np.abs(normal(rng, n)) for b in buffers})
    want = _run_updates(REF, {k: v.copy() for k, v in host.items()}, update, 3, np)
    to_device = misaligned if misalign else cupy.asarray
    got = _run_updates(make_ops(), {k: to_device(v) for k, v in host.items()}, update, 3,
                       cupy)
    for key in host:
        assert_close(got[key], want[key], 1e-5)


@gpu
@pytest.mark.parametrize("misalign", [False, True])
@pytest.mark.parametrize("momentum,nesterov,weight_decay",
                         [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 1e-2),
                          (0.0, False, 1e-2)])
@pytest.mark.parametrize("n", OPT_SIZES)
def test_sgd_update(rng, n, momentum, nesterov, weight_decay, misalign):
    def update(ops, a, lr, step):
        ops.sgd_update(a["param"], a["grad"], a.get("velocity"), lr, momentum=momentum,
                       weight_decay=weight_decay, nesterov=nesterov)
    _check_update(rng, n, update, ["velocity"] if momentum else [], misalign)


@gpu
@pytest.mark.parametrize("misalign", [False, True])
@pytest.mark.parametrize("decoupled,weight_decay", [(False, 0.0), (False, 1e-2), (True, 1e-2)])
@pytest.mark.parametrize("n", OPT_SIZES)
def test_adam_update(rng, n, decoupled, weight_decay, misalign):
    def update(ops, a, lr, step):
        ops.adam_update(a["param"], a["grad"], a["exp_avg"], a["exp_avg_sq"], lr, step,
                        beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=weight_decay,
                        decoupled=decoupled)
    _check_update(rng, n, update, ["exp_avg", "exp_avg_sq"], misalign)


# -- fallbacks, float64, warm-up, TF32 -------------------------------------------------------
@gpu
def test_float64_gradcheck_on_the_gpu_backend():
    model = gn.Sequential(gn.Linear(3, 4), gn.ReLU(), gn.Linear(4, 3), dtype="float64")
    model.to("gpu")
    x = cupy.asarray(np.random.default_rng(0).standard_normal((2, 3)))
    assert gn.gradcheck(model, x)
    labels = cupy.asarray([0, 2])
    assert gn.gradcheck(gn.CrossEntropyLoss(), cupy.asarray(np.random.randn(2, 3)), labels)


@gpu
def test_warmup_compiles_every_kernel():
    gn.warmup()
    for launcher in cupy_ops.LAUNCHERS:
        for name in launcher.SOURCE.kernels:
            kernel = launcher.SOURCE.function(name)
            if on_standin():  # registers are a device's; the emulator built the kernel
                assert kernel.kernel.signature(name)
            else:
                assert kernel.num_regs > 0
    with pytest.raises(KeyError, match=r"'sgd' is not a kernel of optim.cu; expected one of"):
        cupy_ops.optim.SOURCE.function("sgd")


@gpu
def test_set_tf32_switches_the_cublas_compute_type():
    from cupy._core import _routines_linalg as linalg

    try:
        gn.set_tf32(True)
        assert cupy._core.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_TF32
    finally:
        gn.set_tf32(False)
    assert cupy._core.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_DEFAULT
    with pytest.raises(TypeError, match="True or False"):
        gn.set_tf32(1)
