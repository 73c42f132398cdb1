"""The speedrun's recipe and its PyTorch side on the QUICK recipe (seconds on two cores).

Needs PyTorch and Fashion-MNIST on disk (never downloaded); skips with the reason otherwise.
The CUDA modes run where ``torch.cuda.is_available()``.
"""
import numpy as np
import pytest

import gpunet as gn
from gpunet.bench.recipe import QUICK, RECIPE, Recipe

torch = pytest.importorskip("torch")

from gpunet.bench import speedrun_torch  # noqa: E402  (after the skip: it needs torch to run)

KEYS = {"accuracy", "seconds", "compile_seconds", "warmup_seconds", "curve", "steps"}
QUICK_STEPS = QUICK.epochs * 32  # 4000 samples: 31 batches of 128 and one of 32
ABOVE_CHANCE = 0.6  # 10 classes; QUICK reaches 0.75-0.78


@pytest.fixture(scope="module")
def data(fashion_mnist):
    (X, y), (X_test, y_test) = fashion_mnist
    return {"X_train": X.reshape(len(X), -1), "y_train": y,
            "X_test": X_test.reshape(len(X_test), -1), "y_test": y_test}


def check_result(result):
    assert set(result) == KEYS
    assert result["steps"] == QUICK_STEPS
    assert result["accuracy"] > ABOVE_CHANCE
    times = [t for t, _ in result["curve"]]
    assert len(times) == QUICK.epochs and times == sorted(times) and times[0] > 0
    assert result["curve"][-1][1] == result["accuracy"]
    assert result["seconds"] >= times[-1]  # the final evaluation is timed, the others not


# -- the recipe -----------------------------------------------------------------------------
def test_schedule_decays_linearly_to_zero_at_mid_epoch():
    lrs = [RECIPE.lr_at(e) for e in range(RECIPE.epochs)]
    assert lrs[0] == pytest.approx(RECIPE.lr * (1 - 0.5 / RECIPE.epochs))
    assert lrs[-1] == pytest.approx(RECIPE.lr * 0.5 / RECIPE.epochs)
    assert np.allclose(np.diff(lrs), -RECIPE.lr / RECIPE.epochs)
    warm = Recipe(epochs=5, warmup_epochs=1, lr=1.0)
    assert [warm.lr_at(e) for e in range(5)] == pytest.approx([0.5, 0.875, 0.625, 0.375, 0.125])
    assert RECIPE.schedule(0.5, 3) == pytest.approx(RECIPE.lr_at(3) * 0.5 / RECIPE.lr)


def test_recipe_builds_the_gpunet_model_and_optimizer():
    model = RECIPE.model(seed=3)
    assert [layer.out_features for layer in model if isinstance(layer, gn.Linear)] == [256, 256,
                                                                                       10]
    assert RECIPE.macs_per_sample == 784 * 256 + 256 * 256 + 256 * 10
    opt = RECIPE.make_optimizer(model)
    assert isinstance(opt, gn.optim.AdamW) and opt.lr == RECIPE.lr
    assert opt.weight_decay == RECIPE.weight_decay


def test_quick_trains_with_gpunet(data):
    cut = QUICK.select(data)
    assert len(cut["X_train"]) == 4000 and len(cut["y_test"]) == 2000
    model = QUICK.model(seed=0)
    gn.fit(model, gn.CrossEntropyLoss(), QUICK.make_optimizer(model),
           (cut["X_train"], cut["y_train"]), epochs=QUICK.epochs, batch_size=QUICK.batch_size,
           schedule=QUICK.schedule, seed=0, progress=False, verbose=False)
    assert gn.evaluate(model, cut["X_test"], cut["y_test"]).accuracy > ABOVE_CHANCE


# -- PyTorch on the CPU ---------------------------------------------------------------------
def test_torch_starts_from_gpunets_initial_weights():
    ours = [layer for layer in QUICK.model(seed=5) if isinstance(layer, gn.Linear)]
    theirs = [m for m in speedrun_torch._torch_model(torch, QUICK, 5)
              if isinstance(m, torch.nn.Linear)]
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(gn.to_numpy(a.weight.data), b.weight.detach().numpy())
        np.testing.assert_array_equal(gn.to_numpy(a.bias.data), b.bias.detach().numpy())


def test_eager_cpu_is_reproducible(data):
    first = speedrun_torch.run_torch(QUICK, data, seed=0, device="cpu", mode="eager")
    check_result(first)
    assert first["compile_seconds"] is None
    again = speedrun_torch.run_torch(QUICK, data, seed=0, device="cpu", mode="eager")
    assert again["accuracy"] == first["accuracy"]
    assert [a for _, a in again["curve"]] == [a for _, a in first["curve"]]


def test_static_buffer_steps_match_eager(data):
    """The graph mode's step (static index buffer, device counter) without capture."""
    eager = speedrun_torch.run_torch(QUICK, data, seed=1, device="cpu", mode="eager")
    static = speedrun_torch.run_torch(QUICK, data, seed=1, device="cpu", mode="static")
    check_result(static)
    assert [a for _, a in static["curve"]] == [a for _, a in eager["curve"]]


@pytest.mark.parametrize("device, mode, error", [
    ("cpu", "cuda-graph", ValueError), ("cpu", "jit", ValueError), ("tpu", "eager", ValueError)])
def test_bad_device_or_mode_is_refused(data, device, mode, error):
    with pytest.raises(error, match="mode|device"):
        speedrun_torch.run_torch(QUICK, data, seed=0, device=device, mode=mode)


# -- PyTorch on CUDA ------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False")
@pytest.mark.parametrize("mode", ["eager", "cuda-graph", "static", "compile"])
def test_cuda_modes_train_quick(data, mode):
    result = speedrun_torch.run_torch(QUICK, data, seed=0, device="cuda", mode=mode)
    check_result(result)
    assert (result["compile_seconds"] is None) == (mode in ("eager", "static"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False")
def test_cuda_graph_replays_what_static_steps_compute(data):
    """Capture changes nothing: same batches, lr refilled between epochs, same accuracy."""
    graph = speedrun_torch.run_torch(QUICK, data, seed=2, device="cuda", mode="cuda-graph")
    static = speedrun_torch.run_torch(QUICK, data, seed=2, device="cuda", mode="static")
    for (_, a), (_, b) in zip(graph["curve"], static["curve"]):
        assert a == pytest.approx(b, abs=0.005)
