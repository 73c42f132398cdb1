"""gn.gradcheck: elementwise and directional checks, complete failure reports, determinism."""
import numpy as np
import pytest

import gpunet as gn
from gpunet.nn.gradcheck import MAX_ELEMENTWISE

ALL_MODES = ["auto", "elementwise", "directional", "both"]


class DoubledTanh(gn.Tanh):
    """Tanh whose backward returns twice the true input gradient."""

    def local_grad(self, x, y, grad, out):
        super().local_grad(x, y, grad, out)
        out *= 2


class TripledFirstRowMSE(gn.MSELoss):
    """MSE whose gradient is three times too large in the first row."""

    def forward(self, backend, prediction, target, grad):
        loss = super().forward(backend, prediction, target, grad)
        grad[0] *= 3
        return loss


class OneWrongWeight(gn.Linear):
    """Linear with one wrong weight-gradient entry; counts its forward passes."""

    forwards = 0

    def forward(self, x):
        self.forwards += 1
        return super().forward(x)

    def backward(self, grad, input_grad=True):
        grad_x = super().backward(grad, input_grad)
        self.weight.grad[7, 11] += 1.0
        return grad_x


def _x(backend, rng, *shape):
    return backend.asarray(rng.standard_normal(shape), dtype=np.float64)


def _failure(target, *inputs, **kwargs):
    """The GradcheckError that ``gradcheck`` must raise."""
    with pytest.raises(gn.GradcheckError) as info:
        gn.gradcheck(target, *inputs, **kwargs)
    return info.value


@pytest.mark.parametrize("mode", ALL_MODES)
def test_correct_model_and_loss_pass_in_every_mode(backend, rng, mode):
    model = gn.Sequential(gn.Linear(5, 6), gn.Tanh(), gn.Dropout(0.3), gn.Linear(6, 3),
                          dtype="float64").to(backend.name)
    assert gn.gradcheck(model, _x(backend, rng, 4, 5), mode=mode, max_elementwise=20)
    labels = backend.asarray(rng.integers(0, 3, 4))
    assert gn.gradcheck(gn.CrossEntropyLoss(), _x(backend, rng, 4, 3), labels, mode=mode)


@pytest.mark.parametrize("mode", ["elementwise", "directional"])
def test_wrong_layer_backward_fails_in_both_modes(backend, rng, mode):
    err = _failure(DoubledTanh(dtype="float64").to(backend.name), _x(backend, rng, 3, 4),
                   mode=mode)
    (report,) = err.failures
    assert (report.name, report.shape, report.how) == ("the input", (3, 4), mode)
    assert report.error == pytest.approx(0.5, rel=1e-6)  # |2g - g| / |2g|
    assert f"the input (3, 4), {mode}: relative error 0.5" in str(err)


@pytest.mark.parametrize("mode", ["elementwise", "directional"])
def test_wrong_loss_backward_fails_in_both_modes(backend, rng, mode):
    pred, target = _x(backend, rng, 4, 2), _x(backend, rng, 4, 2)
    err = _failure(TripledFirstRowMSE(), pred, target, mode=mode)
    assert [(r.name, r.how) for r in err.failures] == [("the prediction", mode)]
    assert err.failures[0].error > 1e-3


def test_message_shows_both_gradients_of_the_worst_entry(rng):
    x = rng.standard_normal((3, 4))
    err = _failure(DoubledTanh(dtype="float64"), x, mode="elementwise", seed=5)
    projection = np.random.default_rng(5).standard_normal(x.shape)  # gradcheck's R
    true = (1 - np.tanh(x) ** 2) * projection
    worst = np.unravel_index(np.argmax(np.abs(true)), x.shape)
    index, analytic, numeric = err.failures[0].rows[0]
    assert index == tuple(int(i) for i in worst)
    assert analytic == pytest.approx(2 * true[worst], rel=1e-12)
    assert numeric == pytest.approx(true[worst], rel=1e-7)
    (line,) = [ln for ln in str(err).splitlines() if ln.strip().startswith(str(index))]
    analytic_shown, numeric_shown, difference = (float(v) for v in
                                                 line.strip()[len(str(index)):].split())
    assert analytic_shown == pytest.approx(2 * true[worst], rel=1e-9)
    assert numeric_shown == pytest.approx(true[worst], rel=1e-7)
    assert difference == pytest.approx(true[worst], rel=1e-3)


def test_directional_message_shows_both_directional_derivatives(rng):
    err = _failure(DoubledTanh(dtype="float64"), rng.standard_normal((3, 4)),
                   mode="directional", directions=2)
    text = str(err)
    assert "sum(grad * d)" in text and "(f(x + eps d) - f(x - eps d)) / 2 eps" in text
    rows = err.failures[0].rows
    assert sorted(k for k, _, _ in rows) == [0, 1]
    for k, analytic, numeric in rows:
        assert analytic == pytest.approx(2 * numeric, rel=1e-7)
        (line,) = [ln for ln in text.splitlines() if ln.split()[:1] == [str(k)]]
        assert [float(v) for v in line.split()[1:]] == pytest.approx(
            [analytic, numeric, analytic - numeric], rel=1e-3)
        assert f"{analytic:.12g}" in line and f"{numeric:.12g}" in line


@pytest.mark.parametrize("seed", range(4))
def test_directional_catches_one_wrong_entry_of_a_large_tensor(backend, rng, seed):
    layer = OneWrongWeight(400, 300, dtype="float64").to(backend.name)
    assert layer.weight.data.size > 100 * MAX_ELEMENTWISE
    err = _failure(layer, _x(backend, rng, 8, 400), seed=seed)  # default mode "auto"
    assert [(r.name, r.how) for r in err.failures] == [("weight", "directional")]
    assert err.failures[0].error > 1e-4
    # two set-up passes, the bias (300 entries) elementwise, weight and input along 3 directions
    assert layer.forwards == 2 + 2 * 300 + 2 * 2 * 3


def test_auto_mode_checks_small_tensors_elementwise(rng):
    layer = OneWrongWeight(12, 10, dtype="float64")
    (report,) = _failure(layer, rng.standard_normal((2, 12))).failures
    assert (report.name, report.how, report.rows[0][0]) == ("weight", "elementwise", (7, 11))
    assert report.rows[0][1] - report.rows[0][2] == pytest.approx(1.0, rel=1e-6)


def test_both_mode_reports_each_way(rng):
    err = _failure(DoubledTanh(dtype="float64"), rng.standard_normal((2, 3)), mode="both")
    assert sorted(r.how for r in err.failures) == ["directional", "elementwise"]


def test_deterministic_and_leaves_the_tensors_unchanged(backend):
    def run():
        gn.manual_seed(0)
        layer = OneWrongWeight(40, 30, dtype="float64").to(backend.name)
        x = _x(backend, np.random.default_rng(0), 5, 40)
        before = [gn.to_numpy(a).copy() for a in (x, layer.weight.data, layer.bias.data)]
        message = str(_failure(layer, x, mode="both", seed=3))
        after = [gn.to_numpy(a) for a in (x, layer.weight.data, layer.bias.data)]
        assert all(np.array_equal(b, a) for b, a in zip(before, after))
        return message

    assert run() == run()


@pytest.mark.parametrize("bad, match", [({"mode": "sideways"}, "mode must be one of"),
                                        ({"directions": 0}, "directions must be a positive")])
def test_rejects_bad_options(rng, bad, match):
    with pytest.raises(ValueError, match=match):
        gn.gradcheck(gn.Tanh(dtype="float64"), rng.standard_normal((2, 2)), **bad)
