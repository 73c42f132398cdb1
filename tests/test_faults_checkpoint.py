"""Hostile and broken checkpoints: each ends in CheckpointError (exit 2 from the CLI, no
traceback), and loading costs memory in proportion to the file, never to what it claims.

Peak memory is measured in a fresh subprocess from ``VmHWM`` in ``/proc/self/status`` (the
``ru_maxrss`` of a child would include the pages it shares with its parent).
"""
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import gpunet as gn
from gpunet.training.run_files.checkpoint import LoadLimits
from gpunet.training.run_files.checkpoint_layout import implied_shapes
from gpunet.nn.layers import LAYERS

ROOT = Path(__file__).resolve().parents[1]
PEAK_BOUND_KB = 32 * 1024  # growth of the peak resident memory allowed for one hostile load
BOMB_BYTES = 256 * 2**20  # a compressed member that inflates to this many zero bytes

_PROBE = r"""
import contextlib, io, json, re, sys
import gpunet as gn
from gpunet.training.run_files.checkpoint import LoadLimits
from gpunet.cli import main

def peak_kb():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))

path, max_parameters = sys.argv[1], int(sys.argv[2])
before = peak_kb()
try:
    gn.load(path, limits=LoadLimits(max_parameters=max_parameters))
    outcome = "loaded"
except gn.CheckpointError as exc:
    outcome = "CheckpointError: " + str(exc)
except BaseException as exc:
    outcome = f"{type(exc).__name__}: {exc}"
growth = peak_kb() - before
cli = {}
for argv in (["eval", path], ["train", "--resume", path, "--epochs", "2", "--out", "x"]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv + ["--device", "cpu", "--max-params", str(max_parameters)])
        except BaseException as exc:  # a traceback in the real CLI
            code, _ = repr(exc), err.write("Traceback: " + repr(exc))
    cli[argv[0]] = [code, err.getvalue()]
print(json.dumps({"growth_kb": growth, "outcome": outcome, "cli": cli}))
"""


def _npy(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def _npy_header(shape, dtype, data=b""):
    """A ``.npy`` header declaring ``shape`` of ``dtype``, followed by ``data`` only."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str,
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def _valid_arrays(tmp_path):
    gn.manual_seed(0)
    model = gn.Sequential(gn.Flatten(), gn.Linear(4, 6), gn.ReLU(), gn.Linear(6, 2))
    opt = gn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = gn.save(tmp_path / "valid.npz", model, opt, epoch=1,
                   config={"dataset": "xor", "seed": 0, "epochs": 1})
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _write(path, members):
    """A zip of ``{name: bytes}`` (stored); a value ``("bomb", header)`` is a deflated
    member of ``header`` plus BOMB_BYTES zero bytes, written in chunks."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            if isinstance(data, tuple):
                info = zipfile.ZipInfo(name)
                info.compress_type = zipfile.ZIP_DEFLATED
                with z.open(info, "w", force_zip64=True) as f:
                    f.write(data[1])
                    chunk = bytes(2**24)
                    for _ in range(BOMB_BYTES // len(chunk)):
                        f.write(chunk)
            else:
                z.writestr(name, data)
    return path


def _checkpoint(tmp_path, name, arrays, **raw):
    members = {f"{k}.npy": _npy(v) for k, v in arrays.items()}
    members.update({f"{k}.npy": v for k, v in raw.items()})
    return _write(tmp_path / name, members)


def _config(*layers):
    return np.array(json.dumps({"type": "Sequential", "layers": list(layers)}))


def _linear(n_in, n_out):
    return {"type": "Linear", "in_features": n_in, "out_features": n_out, "bias": True,
            "init": "kaiming"}


def _hostile(kind, tmp_path):
    """``(path, max_parameters, message)`` of one hostile checkpoint kind."""
    arrays = _valid_arrays(tmp_path)
    default = LoadLimits().max_parameters
    if kind == "linear_1e9":  # the architecture asks for 10**18 weights
        arrays["model_config"] = _config(_linear(10**9, 10**9))
        return _checkpoint(tmp_path, "huge.npz", arrays), default, "more than 1,000,000,000"
    if kind == "declares_12000":  # a few KB claiming a 144M-weight layer
        arrays["model_config"] = _config({"type": "Flatten"}, _linear(12000, 12000),
                                         {"type": "ReLU"}, _linear(12000, 2))
        path = _checkpoint(tmp_path, "claims.npz", arrays)
        assert path.stat().st_size < 8000
        return path, default, "must have shape (12000, 12000) of float32"
    if kind == "extra_member":  # a zip bomb beside valid entries
        members = {f"{k}.npy": _npy(v) for k, v in arrays.items()}
        members["junk.npy"] = ("bomb", _npy_header((BOMB_BYTES,), np.uint8))
        path = _write(tmp_path / "bomb.npz", members)
        assert path.stat().st_size < 2 * 2**20
        return path, default, "entries a gpunet checkpoint does not have: ['junk']"
    if kind == "compressed_buffer":  # the bomb under a name the layout expects
        members = {f"{k}.npy": _npy(v) for k, v in arrays.items()}
        members["optimizer.buffer.momentum.npy"] = ("bomb", _npy_header((56,), np.float32))
        return _write(tmp_path / "bomb2.npz", members), default, "is compressed"
    if kind == "npy_1tib":  # a header declaring 2**38 float32 over a few bytes
        arrays["model_config"] = _config(_linear(2**19, 2**19))
        del arrays["optimizer"], arrays["optimizer.buffer.momentum"]
        raw = {"param.0.weight": _npy_header((2**19, 2**19), np.float32, bytes(64)),
               "param.0.bias": _npy(np.zeros(2**19, np.float32))}
        params = [k for k in arrays if k.startswith("param.")]
        path = _checkpoint(tmp_path, "tib.npz", {k: v for k, v in arrays.items()
                                                 if k not in params}, **raw)
        return path, 2**40, "holds 64 bytes of data"  # limit raised: the size check holds
    if kind == "deep_json":
        arrays["model_config"] = np.array("[" * 100_000 + "]" * 100_000)
        return _checkpoint(tmp_path, "deep.npz", arrays), default, "deeper than the limit"
    raise AssertionError(kind)


KINDS = ["linear_1e9", "declares_12000", "extra_member", "compressed_buffer", "npy_1tib",
         "deep_json"]


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("kind", KINDS)
def test_hostile_checkpoint_is_refused_cheaply(kind, tmp_path):
    path, max_parameters, message = _hostile(kind, tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(max_parameters)],
                            capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    probe = json.loads(result.stdout.splitlines()[-1])
    assert probe["outcome"].startswith("CheckpointError: "), probe["outcome"][:300]
    assert probe["growth_kb"] < PEAK_BOUND_KB, f"peak memory grew {probe['growth_kb']} kB"
    assert message in probe["outcome"]
    for command, (code, err) in probe["cli"].items():
        assert code == 2, (command, err[-500:])
        assert "error:" in err and message in err and "Traceback" not in err


def test_small_broken_entries(tmp_path):
    arrays = _valid_arrays(tmp_path)
    arrays["epoch"] = np.array(-3)
    with pytest.raises(gn.CheckpointError, match="entry 'epoch' must be >= 0, got -3"):
        gn.load(_checkpoint(tmp_path, "negative.npz", arrays))
    members = {f"{k}.npy": _npy(v) for k, v in _valid_arrays(tmp_path).items()}
    members["notes.txt"] = b"hello"
    with pytest.raises(gn.CheckpointError, match="holds 'notes.txt', which is not an .npy"):
        gn.load(_write(tmp_path / "notes.npz", members))


def test_limits_are_overridable_and_checked(tmp_path):
    gn.manual_seed(0)
    path = gn.save(tmp_path / "ok.npz", gn.Sequential(gn.Linear(20, 30), gn.Linear(30, 2)))
    assert gn.load(path).model.config()["layers"][0]["out_features"] == 30
    with pytest.raises(gn.CheckpointError, match="more than 500 parameters"):
        gn.load(path, limits=LoadLimits(max_parameters=500))
    with pytest.raises(gn.CheckpointError, match="more than 2 layers"):
        gn.load(path, limits=LoadLimits(max_layers=2))
    with pytest.raises(gn.CheckpointError, match="'model_config' must be one string of at "
                                                 "most 10 characters"):
        gn.load(path, limits=LoadLimits(max_json_chars=10))
    with pytest.raises(gn.CheckpointError, match="deeper than the limit of 2 levels"):
        gn.load(path, limits=LoadLimits(max_depth=2))
    with pytest.raises(ValueError, match="max_parameters must be a positive integer, got 0"):
        LoadLimits(max_parameters=0)
    with pytest.raises(TypeError, match="limits must be a gpunet.LoadLimits"):
        gn.load(path, limits={"max_parameters": 5})


def test_cli_max_params_option(tmp_path, capsys):
    from gpunet.cli import main

    gn.manual_seed(0)
    path = gn.save(tmp_path / "ok.npz", gn.Sequential(gn.Linear(2, 30), gn.Linear(30, 2)),
                   config={"dataset": "xor", "seed": 0})  # 152 parameters
    assert main(["eval", str(path), "--device", "cpu", "--max-params", "100"]) == 2
    err = capsys.readouterr().err
    assert "more than 100 parameters" in err and "--max-params" in err
    assert main(["eval", str(path), "--device", "cpu", "--max-params", "1000"]) == 0


def test_implied_shapes_match_built_models_for_every_layer_type():
    """checkpoint_layout knows which layers have parameters without building them; a new
    layer type with parameters must be taught to it, or this test fails."""
    built = ("Linear", "Sequential", "Stack", "StackedLinear")  # built with arguments below
    layers = [cls() for name, cls in LAYERS.items() if name not in built]
    model = gn.Sequential(gn.Linear(3, 5), *layers, gn.Sequential(gn.Linear(5, 2, bias=False)))
    shapes = implied_shapes(model.config(), "model", LoadLimits())
    assert shapes == {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {"0.weight": (5, 3), "0.bias": (5,), f"{len(layers) + 1}.0.weight": (2, 5)}
    stack = gn.stack(gn.Sequential(gn.Linear(3, 5), gn.ReLU(), gn.Linear(5, 2, bias=False)), 4)
    for module in (stack, stack.layers[0]):  # a stack, and one of its stacked layers
        shapes = implied_shapes(module.config(), "model", LoadLimits())
        assert shapes == {k: v.shape for k, v in module.state_dict().items()}
    assert implied_shapes(stack.config(), "m", LoadLimits())["2.weight"] == (4, 2, 5)
