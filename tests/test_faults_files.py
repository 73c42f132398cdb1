"""Writes that fail: a writer killed just before its rename (a real SIGKILL) leaves a
temporary file that the next save of the same path removes, touching nothing else; a full
disk (RLIMIT_FSIZE, or a tiny tmpfs where mounting is allowed) names the path and keeps the
previous checkpoint."""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import gpunet as gn

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX processes and locks")

_KILLED_BEFORE_RENAME = """
import os, signal, sys
import gpunet as gn
os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)  # dies at the rename
gn.manual_seed(0)
gn.save(sys.argv[1], gn.Sequential(gn.Linear(300, 300)), epoch=2)
"""

_FULL_DISK = """
import json, os, resource, signal, sys
import gpunet as gn
path, how = sys.argv[1], sys.argv[2]
gn.manual_seed(0)
gn.save(path, gn.Sequential(gn.Linear(4, 2)), epoch=1)  # about 2 KB
if how == "rlimit":  # writing past 64 KB fails with EFBIG instead of killing the process
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
try:
    gn.save(path, gn.Sequential(gn.Linear(200, 200)), epoch=2)  # about 160 KB
    error = None
except OSError as exc:
    error = str(exc)
print(json.dumps({"error": error, "epoch": gn.load(path).epoch,
                  "files": sorted(os.listdir(os.path.dirname(path)))}))
"""


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _python(script, *args, cwd, prefix=()):
    return subprocess.run([*prefix, sys.executable, "-c", script, *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=_env(), timeout=60)


def _small_model():
    gn.manual_seed(0)
    return gn.Sequential(gn.Linear(4, 2))


def test_next_save_removes_a_killed_writers_temporary_file_and_nothing_else(tmp_path):
    path = tmp_path / "ckpt.npz"
    gn.save(path, _small_model(), epoch=1)
    with subprocess.Popen([sys.executable, "-c", _KILLED_BEFORE_RENAME, str(path)],
                          env=_env()) as killed:
        assert killed.wait(timeout=60) == -signal.SIGKILL
    leftovers = list(tmp_path.glob(".ckpt.npz.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 300 * 300 * 4
    assert gn.load(path).epoch == 1  # the previous checkpoint is intact
    dead_pid = killed.pid

    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        keep = {
            "another target's": tmp_path / f".other.npz.{dead_pid}.00ff00ff.tmp",
            "a live process's": tmp_path / f".ckpt.npz.{alive.pid}.0badc0de.tmp",
            "a locked one's": tmp_path / f".ckpt.npz.{dead_pid}.10c4ed00.tmp",
            "a foreign name's": tmp_path / ".ckpt.npz.notes.tmp",
        }
        for file in keep.values():
            file.write_bytes(b"not ours to remove")
        with open(keep["a locked one's"], "rb") as held:  # as a writer on another host
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            gn.save(path, _small_model(), epoch=3)
        alive.kill()
    assert not leftovers[0].exists()
    assert {what: file.exists() for what, file in keep.items()} == dict.fromkeys(keep, True)
    assert gn.load(path).epoch == 3


def _tmpfs_prefix(folder):
    """Run the child in its own mount namespace with a 96 KB tmpfs on ``folder``."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare command to mount a private tmpfs")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=96k "
                            f"tmpfs {folder}"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {probe.stderr.strip()}")
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=96k tmpfs {folder} && '
            f'exec "$@"', "sh"]


@pytest.mark.parametrize("how", ["rlimit", "tmpfs"])
def test_full_disk_names_the_path_and_keeps_the_previous_checkpoint(tmp_path, how):
    if how == "rlimit":
        pytest.importorskip("resource", reason="RLIMIT_FSIZE needs the resource module")
        prefix, why = (), "File too large (a file size limit was reached)"
    else:
        prefix, why = _tmpfs_prefix(tmp_path), "No space left on device (the disk is full)"
    path = tmp_path / "ckpt.npz"
    result = _python(_FULL_DISK, path, how, cwd=ROOT, prefix=prefix)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert f"could not write the checkpoint {path}: {why}" in report["error"]
    assert report["error"].endswith("the previous checkpoint there is intact")
    assert report["epoch"] == 1 and report["files"] == ["ckpt.npz"]  # no temporary left
