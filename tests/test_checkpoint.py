"""Checkpoints: round trip, no pickle, atomic writes, clear errors on bad files."""
import os
import zipfile

import numpy as np
import pytest

import gpunet as gn
from gpunet.training.run_files import checkpoint as ckpt_module


def _model(dtype="float32"):
    gn.manual_seed(7)
    return gn.Sequential(gn.Flatten(), gn.Linear(4, 6), gn.Tanh(), gn.Dropout(0.2),
                         gn.Linear(6, 3), dtype=dtype)


def _train_steps(model, optimizer, steps=3):
    rng = np.random.default_rng(0)
    loss_fn = gn.CrossEntropyLoss()
    xp = model.backend.xp
    for _ in range(steps):
        x = xp.asarray(rng.standard_normal((5, 4)).astype(model.dtype))
        y = xp.asarray(rng.integers(0, 3, 5))
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        optimizer.step()


def _saved(tmp_path, model=None, optimizer=None, **kwargs):
    model = model or _model()
    path = tmp_path / "ckpt.npz"
    gn.save(path, model, optimizer, **kwargs)
    return path


def test_round_trip_restores_model_optimizer_epoch_and_meta(tmp_path, backend):
    model = _model("float64").to(backend)
    opt = gn.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99), weight_decay=1e-3)
    _train_steps(model, opt)
    path = _saved(tmp_path, model, opt, epoch=3, note="hello", scores=[1, 2.5])

    loaded = gn.load(path)  # always onto the CPU: portable from either device
    assert loaded.epoch == 3
    assert loaded.meta == {"note": "hello", "scores": [1, 2.5]}
    assert loaded.model.config() == model.config()
    assert loaded.model.dtype == np.float64
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.model.state_dict()[name], value)

    restored = loaded.make_optimizer()
    assert isinstance(restored, gn.optim.Adam)
    assert (restored.beta1, restored.beta2, restored.weight_decay) == (0.8, 0.99, 1e-3)
    assert restored.step_count == opt.step_count == 3
    for name, buf in opt.buffers.items():
        np.testing.assert_array_equal(gn.to_numpy(restored.buffers[name]), gn.to_numpy(buf))

    # continuing from the checkpoint equals continuing the original
    if backend.name == "cpu":
        for m, o in ((model, opt), (loaded.model, restored)):
            gn.manual_seed(1)  # same dropout masks
            _train_steps(m, o, 2)
        for name, value in model.state_dict().items():
            np.testing.assert_allclose(loaded.model.state_dict()[name], value, rtol=1e-12)


def test_file_is_plain_npz_readable_without_pickle(tmp_path):
    model = _model()
    opt = gn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train_steps(model, opt)
    path = _saved(tmp_path, model, opt, epoch=1)
    with np.load(path, allow_pickle=False) as data:
        files = set(data.files)
        assert str(data["format"]) == "gpunet-checkpoint"
        assert int(data["format_version"]) == ckpt_module.FORMAT_VERSION
        np.testing.assert_array_equal(data["param.1.weight"], model.state_dict()["1.weight"])
    assert {"model_config", "dtype", "epoch", "meta", "optimizer",
            "optimizer.buffer.momentum"} <= files


def test_sgd_without_momentum_and_no_optimizer(tmp_path):
    model = _model()
    opt = gn.optim.SGD(model.parameters(), lr=0.1)
    loaded = gn.load(_saved(tmp_path, model, opt))
    assert loaded.make_optimizer().lr == 0.1
    loaded = gn.load(_saved(tmp_path, model))
    assert loaded.optimizer_state is None
    with pytest.raises(gn.CheckpointError, match="no optimizer state"):
        loaded.make_optimizer()


def test_best_state_round_trip(tmp_path):
    model = _model()
    best = {k: v + 1 for k, v in model.state_dict().items()}
    loaded = gn.load(_saved(tmp_path, model, best_state=best))
    for name, value in best.items():
        np.testing.assert_array_equal(loaded.best_state[name], value)


def test_meta_must_be_json(tmp_path):
    with pytest.raises(TypeError, match="meta must be JSON-serialisable"):
        _saved(tmp_path, when=object())
    with pytest.raises(ValueError, match="epoch must be a non-negative integer"):
        _saved(tmp_path, epoch=-1)


def test_failed_save_keeps_existing_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = _saved(tmp_path, epoch=1)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        gn.save(path, _model(), epoch=2)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert gn.load(path).epoch == 1


def test_missing_directory_and_not_a_checkpoint(tmp_path):
    with pytest.raises(gn.CheckpointError, match="does not exist"):
        gn.load(tmp_path / "nope.npz")
    with pytest.raises(gn.CheckpointError, match="is a directory"):
        gn.load(tmp_path)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(gn.CheckpointError, match="not a gpunet checkpoint"):
        gn.load(other)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped"])
def test_corrupt_files_raise_checkpoint_error(tmp_path, damage):
    path = _saved(tmp_path)
    data = path.read_bytes()
    if damage == "garbage":
        data = b"this is not a zip file at all" * 10
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:  # flip bytes inside the stored weights: the zip CRC catches it
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("param.1.weight.npy")
        start = info.header_offset + 30 + len(info.filename) + 100
        data = data[:start] + bytes(b ^ 0xFF for b in data[start:start + 8]) \
            + data[start + 8:]
    path.write_bytes(data)
    with pytest.raises(gn.CheckpointError, match=str(path.name)):
        gn.load(path)


def _rewrite(path, **changes):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays.update(changes)
    np.savez(path, **arrays)


def test_other_format_version(tmp_path):
    path = _saved(tmp_path)
    _rewrite(path, format_version=np.array(99))
    with pytest.raises(gn.CheckpointError, match="format version 99"):
        gn.load(path)


def test_shape_mismatch(tmp_path):
    path = _saved(tmp_path)
    _rewrite(path, **{"param.1.weight": np.zeros((5, 4), np.float32)})
    with pytest.raises(gn.CheckpointError, match="do not fit the architecture.*1.weight"):
        gn.load(path)


def test_optimizer_state_shape_mismatch(tmp_path):
    model = _model()
    opt = gn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = _saved(tmp_path, model, opt)
    _rewrite(path, **{"optimizer.buffer.momentum": np.zeros(3, np.float32)})
    with pytest.raises(gn.CheckpointError, match="optimizer state does not fit"):
        gn.load(path).make_optimizer()


def test_bad_json_entry(tmp_path):
    path = _saved(tmp_path)
    _rewrite(path, model_config=np.array("{not json"))
    with pytest.raises(gn.CheckpointError, match="model_config"):
        gn.load(path)


@pytest.mark.parametrize("key, value", [("meta", "[1, 2]"), ("optimizer", "3"),
                                        ("model_config", '"Sequential"')])
def test_json_entries_must_be_objects(tmp_path, key, value):
    model = _model()
    path = _saved(tmp_path, model, gn.optim.SGD(model.parameters(), lr=0.1))
    _rewrite(path, **{key: np.array(value)})
    with pytest.raises(gn.CheckpointError, match=f"entry '{key}' must hold a JSON object"):
        gn.load(path)


def test_unrebuildable_model_and_missing_dtype(tmp_path):
    path = _saved(tmp_path)
    _rewrite(path, model_config=np.array('{"type": "Sequential"}'))
    with pytest.raises(gn.CheckpointError, match="cannot rebuild the model") as info:
        gn.load(path)
    assert "dtype" not in str(info.value)
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "dtype"}
    np.savez(path, **arrays)
    with pytest.raises(gn.CheckpointError, match="lacks the entry 'dtype'"):
        gn.load(path)


def test_optimizer_state_without_lr(tmp_path):
    model = _model()
    path = _saved(tmp_path, model, gn.optim.SGD(model.parameters(), lr=0.1))
    _rewrite(path, optimizer=np.array('{"type": "SGD", "step": 0}'))
    with pytest.raises(gn.CheckpointError, match="optimizer state does not fit.*'lr'"):
        gn.load(path).make_optimizer()


def test_text_file_and_bad_device(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("just some text\n")
    with pytest.raises(gn.CheckpointError, match="is not an .npz file"):
        gn.load(text)
    with pytest.raises(ValueError, match="device must be one of") as info:
        gn.load(_saved(tmp_path), device="tpu")
    assert not isinstance(info.value, gn.CheckpointError)
