"""A built wheel works in a clean virtual environment, kernels/ sources included and the
shipped dataset left out (it stays with the source checkout).

The wheel is built without build isolation, from the test's own environment: the ``dev`` extra
brings ``wheel``, which the setuptools of a fresh venv needs for that; nothing is downloaded to
build it."""
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMOKE = """
import numpy as np, gpunet as gn
gn.manual_seed(0)
model = gn.Sequential(gn.Flatten(), gn.Linear(4, 8), gn.ReLU(), gn.Linear(8, 2))
loss_fn = gn.CrossEntropyLoss()
opt = gn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
x = np.random.rand(6, 2, 2).astype(np.float32); y = np.array([0, 1] * 3)
first = float(loss_fn(model(x), y))
for _ in range(50):
    loss_fn(model(x), y); model.backward(loss_fn.backward(), input_grad=False); opt.step()
assert float(loss_fn(model(x), y)) < first
assert gn.datasets.checkout_dir("fashion-mnist") is None, "a wheel is no source checkout"
print("ok", gn.__file__)
"""


def _run(*cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def _tracked_copy(dest):
    """A copy of the files git tracks (no stale build/ or egg-info to leak into the wheel)."""
    listed = _run("git", "ls-files", "-z", cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    for name in filter(None, listed.stdout.split("\0")):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    return dest


def test_wheel_installs_and_trains_in_a_clean_venv(tmp_path):
    source = _tracked_copy(tmp_path / "src")
    built = _run(sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                 "--no-build-isolation", "-w", str(tmp_path / "dist"))
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("gpunet-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    sources = {p.name for p in (ROOT / "kernels").glob("*.cu")}
    assert sources <= {Path(n).name for n in names if n.endswith(".cu")}
    assert (source / "data" / "fashion-mnist" / "LICENSE").is_file()  # in the source, ...
    assert not [n for n in names if "ubyte" in n or "fashion-mnist" in n]  # ... not the wheel
    assert wheel.stat().st_size < 1_000_000, f"{wheel.name}: {wheel.stat().st_size} bytes"

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    installed = _run(str(python), "-m", "pip", "install", "--quiet", str(wheel))
    if installed.returncode != 0 and "numpy" in installed.stderr.lower():
        pytest.skip(f"numpy could not be installed into the clean venv: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr[-2000:]
    smoke = _run(str(python), "-c", SMOKE, cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stderr[-2000:]
    assert str(env_dir) in smoke.stdout
