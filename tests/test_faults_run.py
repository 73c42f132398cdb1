"""Process faults of ``gpunet train``, with real processes and signals: two runs on one
folder, a killed run's stale claim, a read-only output folder, Ctrl-C before anything was
saved, SIGTERM, and metrics files read while a run is going."""
import csv
import ctypes
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import gpunet as gn
from gpunet.training.loop.history import COLUMNS
from gpunet.training.run_files.runclaim import LOCK_NAME

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--dataset", "xor", "--device", "cpu", "--no-progress", "--hidden", "16",
         "--batch-size", "50"]
ENDLESS = [*SMALL, "--epochs", "100000"]  # runs until a signal stops it
EPOCH = r"epoch +{}/"  # the line of an epoch (its number is padded)
SLOW_FIRST_EPOCH = ["--dataset", "xor", "--hidden", "2048", "2048", "--batch-size", "1",
                    "--epochs", "2", "--device", "cpu", "--no-progress"]  # 10+ s per epoch
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and processes")


def _child_setup():
    """Let the child turn SIGINT into KeyboardInterrupt even when this process ignores it
    (as a background job does)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")


class _Run:
    """``python -m gpunet ARGS`` in the background; its stdout lines arrive in a queue."""

    def __init__(self, *args, cwd):
        self.proc = subprocess.Popen([sys.executable, "-m", "gpunet", *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=cwd, env=_env(), preexec_fn=_child_setup)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern, timeout=60):
        """Block until a stdout line matches the regex ``pattern`` (at its start); on a
        timeout or an early exit, kill the run and fail."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"no line {pattern!r} within {timeout} s") from None
            if line is None:
                raise AssertionError(f"exited {self.proc.wait()} before {pattern!r}: "
                                     f"{self.proc.stderr.read()[-2000:]}")
            if re.match(pattern, line):
                return line

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()

    def stop(self, sig):
        """Send ``sig``; return (exit status, stderr)."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30), self.proc.stderr.read()
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"still running 30 s after signal {sig}") from None


def _run(*args, cwd, **kwargs):
    return subprocess.run([sys.executable, "-m", "gpunet", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=_env(), timeout=120,
                          **kwargs)


def test_second_run_on_a_claimed_folder_exits_2_and_a_killed_runs_claim_is_stale(tmp_path):
    out = tmp_path / "run"
    with _Run("train", "--out", out, *SLOW_FIRST_EPOCH, cwd=tmp_path) as first:
        first.wait_for("output:")  # claimed, training, nothing saved yet
        second = _run("train", "--out", out, *SMALL, "--epochs", "2", cwd=tmp_path)
        status, _ = first.stop(signal.SIGKILL)
    assert second.returncode == 2, second.stdout
    assert f"the output folder {out} is in use by another gpunet run (pid " \
           f"{first.proc.pid} on " in second.stderr
    assert "Traceback" not in second.stderr and second.stdout == ""
    assert status == -signal.SIGKILL and (out / LOCK_NAME).exists()  # left, unlocked

    with _Run("train", "--out", out, *ENDLESS, cwd=tmp_path) as third:  # takes it over
        third.wait_for(EPOCH.format(2))
        status, _ = third.stop(signal.SIGKILL)
    assert status == -signal.SIGKILL and (out / LOCK_NAME).exists()
    saved = gn.load(out / "checkpoint.npz").epoch
    resumed = _run("train", "--resume", out / "checkpoint.npz", "--epochs", saved + 1,
                   "--device", "cpu", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"(resuming at epoch {saved})" in resumed.stdout
    assert gn.load(out / "checkpoint.npz").epoch == saved + 1
    assert not (out / LOCK_NAME).exists()  # a finished run removes its claim


def _without_root_override():
    """preexec_fn making a root child obey file permissions (drop CAP_DAC_OVERRIDE)."""
    if os.geteuid() != 0:
        return _child_setup
    libc = ctypes.CDLL(None, use_errno=True)

    def drop():
        if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    return drop


def test_read_only_output_folder_fails_before_training(tmp_path):
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = _run("train", "--out", out, *SMALL, "--epochs", "2", cwd=tmp_path,
                      preexec_fn=_without_root_override())
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot run a child that obeys file permissions here: {exc}")
    finally:
        out.chmod(0o755)
    assert result.returncode == 2
    assert f"the output folder {out} is not writable (Permission denied)" in result.stderr
    assert result.stdout == ""  # found before the data, the model and the first epoch
    assert "Traceback" not in result.stderr and os.listdir(out) == []


def test_ctrl_c_before_the_first_epoch_says_nothing_was_saved(tmp_path):
    out = tmp_path / "run"
    with _Run("train", "--out", out, *SLOW_FIRST_EPOCH, cwd=tmp_path) as run:
        run.wait_for("output:")
        status, err = run.stop(signal.SIGINT)
    assert status == 130
    assert "gpunet train: interrupted; nothing was saved (no epoch had finished)" in err
    assert "keeps" not in err and "Traceback" not in err
    assert not out.exists()  # the folder it had made for the run is removed again


def test_sigterm_stops_like_ctrl_c_and_names_the_saved_epoch(tmp_path):
    out = tmp_path / "run"
    with _Run("train", "--out", out, *ENDLESS, cwd=tmp_path) as run:
        run.wait_for(EPOCH.format(2))
        status, err = run.stop(signal.SIGTERM)
    assert status == 143
    checkpoint = out / "checkpoint.npz"
    saved = gn.load(checkpoint).epoch
    assert saved >= 2
    assert (f"gpunet train: terminated (SIGTERM); the checkpoint {checkpoint} keeps epoch "
            f"{saved} of 100000; continue with: gpunet train --resume {checkpoint}") in err
    assert "Traceback" not in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted"
    listed = [r["epoch"] for r in metrics["epochs"]]  # one behind if the signal fell
    assert listed in (list(range(1, saved + 1)), list(range(1, saved)))  # between the two
    assert sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.csv", "metrics.json"]


def test_metrics_files_grow_per_epoch_and_are_always_whole(tmp_path):
    out = tmp_path / "run"
    with _Run("train", "--out", out, *ENDLESS, cwd=tmp_path) as run:
        run.wait_for(EPOCH.format(3))
        counts = []
        stop = time.monotonic() + 0.5
        while time.monotonic() < stop:  # read while the run replaces both files
            metrics = json.loads((out / "metrics.json").read_text())  # never half written
            rows = list(csv.reader(io.StringIO((out / "metrics.csv").read_text())))
            assert rows[0] == list(COLUMNS)
            assert all(len(row) == len(COLUMNS) for row in rows)  # never half a line
            assert metrics["status"] == "running" and metrics["test"] is None
            epochs = [r["epoch"] for r in metrics["epochs"]]
            assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= 2
            counts.append(len(rows) - 1)
        assert counts[-1] > counts[0]  # rows arrived while we read
