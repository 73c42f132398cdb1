"""gpunet bench: arguments, variant choice, the timing loop, out-of-memory rows, ratios,
targets, and the files of a tiny real sweep (JSON schema, CSV, Markdown, plots)."""
import argparse
import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import gpunet as gn
from gpunet.bench import report as bench_report, sweep as bench
from gpunet.bench.variants import GemmFloorVariant, GpunetVariant, Variant, Workload
from gpunet.ops.numpy_ops import NumpyOps

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
TINY = ["--device", "cpu", "--hidden", "16", "--samples", "100", "--steps", "2",
        "--repeats", "2", "--warmup", "1", "--epochs", "1", "--batch-sizes", "8", "32"]


def parse(argv):
    parser = argparse.ArgumentParser(prog="gpunet bench")
    bench.add_arguments(parser)
    return parser.parse_args(argv)


# -- arguments and choices ---------------------------------------------------------------
def test_defaults_full_and_quick():
    full = bench.settings_from(parse([]))
    assert full.batch_sizes == tuple(2 ** k for k in range(5, 17))
    assert (full.repeats, full.warmup, full.epochs) == (5, 10, 3)
    quick = bench.settings_from(parse(["--quick"]))
    assert quick.batch_sizes == bench.QUICK_BATCH_SIZES
    assert quick.repeats < full.repeats and quick.epochs <= full.epochs
    chosen = bench.settings_from(parse(["--quick", "--repeats", "7", "--batch-sizes", "64",
                                        "16", "64"]))
    assert chosen.repeats == 7 and chosen.batch_sizes == (16, 64)


@pytest.mark.parametrize("argv, expected", [
    (["--batch-sizes", "0"], "expected a positive integer, got '0'"),
    (["--warmup", "-1"], "expected a non-negative integer, got '-1'"),
    (["--hidden", "wide"], "expected a positive integer, got 'wide'"),
    (["--variants", "jax"], "invalid choice: 'jax'"),
])
def test_bad_arguments_are_argparse_errors(argv, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


def test_cpu_defaults_skip_gpu_variants_and_refuse_them_when_asked():
    names, skipped = bench.choose_variants(None, "cpu")
    assert names[0] == "numpy" and "gemm-floor" in names
    assert "numpy-static" in names
    assert not {"cupy-unfused", "cupy-fused", "cupy-graph"} & (set(names) | set(skipped))
    assert ("torch" in names) == HAS_TORCH
    with pytest.raises(bench.BenchError, match="'cupy-fused' cannot run: runs on the gpu, "
                                                "not the cpu"):
        bench.choose_variants(["numpy", "cupy-fused"], "cpu")
    with pytest.raises(bench.BenchError, match="'numpy' cannot run: runs on the cpu"):
        bench.choose_variants(["numpy"], "gpu")


@pytest.mark.skipif(gn.gpu_status()[0], reason="a GPU answers here")
def test_gpu_request_without_a_gpu_exits_2_with_the_reason(capsys):
    assert bench.run(parse(TINY[2:] + ["--device", "gpu"])) == 2
    assert "gpunet bench: error: the GPU backend is unavailable" in capsys.readouterr().err


class SweepStarted(Exception):
    """Raised by a stand-in for ``bench.sweep``: the sweep was reached."""


@pytest.mark.parametrize("below", ["", "sub"])
def test_bad_out_fails_before_measuring(below, tmp_path, monkeypatch, capsys):
    existing = tmp_path / "results.txt"
    existing.write_text("kept")
    monkeypatch.setattr(bench, "sweep", lambda *a, **k: pytest.fail("the sweep ran"))
    out = existing / below if below else existing
    assert bench.run(parse(TINY + ["--out", str(out)])) == 2
    err = capsys.readouterr().err
    expected = "expected a folder, got an existing file" if not below else \
        "expected a writable folder; creating it or a file in it failed: Not a directory"
    assert f"gpunet bench: error: --out {out}: {expected}" in err
    assert existing.read_text() == "kept"


def test_out_folder_exists_before_measuring(tmp_path, monkeypatch):
    out = tmp_path / "new" / "run"

    def sweep(*args, **kwargs):
        assert out.is_dir() and not any(out.iterdir())  # created, and the probe file gone
        raise SweepStarted

    monkeypatch.setattr(bench, "sweep", sweep)
    with pytest.raises(SweepStarted):
        bench.run(parse(TINY + ["--out", str(out)]))


def test_python_dash_m_gpunet_bench_reports_errors_like_the_cli(tmp_path):
    existing = tmp_path / "file"
    existing.write_text("")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "gpunet.bench", *TINY, "--out", str(existing)],
                            capture_output=True, text=True, cwd=root, env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith(f"gpunet bench: error: --out {existing}: expected a folder")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("script, expected", [
    ("echo 580.65.06; echo 580.65.06", "580.65.06"),  # one line per GPU
    ("echo 'NVIDIA-SMI has failed' >&2; exit 9", None),
    (None, None),  # not installed
])
def test_nvidia_driver_version_from_nvidia_smi(script, expected, tmp_path, monkeypatch):
    if script is not None:
        fake = tmp_path / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\n{script}\n")
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert bench_report.nvidia_driver_version() == expected


# -- the timing loop ---------------------------------------------------------------------
class FakeVariant(Variant):
    """A step that fails as told for batches above ``limit`` or after ``fail_after`` steps;
    records its steps in ``log`` (shared between fakes to see their order)."""

    def __init__(self, name="fake", limit=None, error=MemoryError, log=None, fail_after=None):
        self.name, self.limit, self.error, self.fail_after = name, limit, error, fail_after
        self.log = [] if log is None else log
        self.steps, self.released = 0, 0

    def step_at(self, batch_size):
        def step():
            too_big = self.limit is not None and batch_size > self.limit
            if too_big or self.steps == self.fail_after:
                raise self.error("cannot allocate 1.5 GiB\nsecond line")
            self.steps += 1
            self.log.append(self.name)
        return step

    def settle(self):
        """No worker threads to wait for."""

    def release(self):
        self.released += 1


def test_out_of_memory_is_a_row_and_the_sweep_goes_on():
    fake = FakeVariant(limit=16)
    settings = bench.Settings((8, 32, 16), steps=3, repeats=2, warmup=1, epochs=1,
                              repeat_seconds=0.01)
    rows = bench.sweep([fake], settings)
    assert [(r["batch_size"], r["status"]) for r in rows] == [
        (8, "ok"), (32, "out of memory"), (16, "ok")]
    assert rows[1]["message"] == "cannot allocate 1.5 GiB"
    assert fake.steps == 2 * (1 + 2 * 3)
    assert fake.released == 4  # after each size, and at once after the out-of-memory
    assert rows[0]["epoch_seconds"] is None  # this variant has no epoch


def test_variants_take_turns_and_one_failing_leaves_the_others_running():
    log = []
    a, b = FakeVariant("a", log=log, fail_after=3), FakeVariant("b", log=log)
    rows = bench.measure_size([a, b], 4, bench.Settings((4,), 2, 3, 1, 0, 0.01))
    # warm-up a, warm-up b, then two steps per repeat in turns; a fails in its second repeat
    assert log == ["a", "b", "a", "a", "b", "b", "b", "b", "b", "b"]
    assert [r["status"] for r in rows] == ["out of memory", "ok"]
    assert rows[1]["repeats"] == 3 and "step_seconds" not in rows[0]


def test_a_failing_launch_count_keeps_the_timings():
    class Uncountable(FakeVariant):
        def count_launches(self, step):
            raise RuntimeError("CUPTI unavailable")

    [row] = bench.measure_size([Uncountable()], 4, bench.Settings((4,), 1, 2, 0, 0, 0.01),
                               count_launches=True)
    assert row["status"] == "ok" and row["step_seconds"]["median"] > 0
    assert row["launches"] is None
    assert row["message"] == "launches not counted: RuntimeError: CUPTI unavailable"


def test_a_failing_variant_is_an_error_row_and_exit_status():
    rows = bench.sweep([FakeVariant(limit=0, error=ValueError)],
                       bench.Settings((4,), 1, 1, 0, 0, 0.01))
    assert rows[0]["status"] == "error"
    assert rows[0]["message"].startswith("ValueError: cannot allocate")


def test_auto_steps_fill_the_repeat_time():
    fake = FakeVariant()
    [row] = bench.measure_size([fake], 4, bench.Settings((4,), None, 2, 0, 0, 0.01))
    assert 1 <= row["steps"] <= bench.MAX_AUTO_STEPS
    assert fake.steps == 1 + 2 * row["steps"]
    spread = row["step_seconds"]
    assert spread["min"] <= spread["median"] <= spread["max"]
    assert row["samples_per_second"]["median"] == pytest.approx(4 / spread["median"])


def test_ratios_to_torch_and_floor():
    def row(name, seconds, status="ok"):
        return {"variant": name, "status": status, "step_seconds": {"median": seconds}}

    rows = [row("numpy", 2.0), row("torch", 4.0), row("gemm-floor", 1.0),
            row("cupy-fused", None, "out of memory")]
    bench.add_ratios(rows)
    assert rows[0]["speedup_vs_torch"] == 2.0 and rows[0]["time_vs_floor"] == 2.0
    assert rows[1]["speedup_vs_torch"] is None and rows[1]["time_vs_floor"] == 4.0
    assert rows[2]["time_vs_floor"] is None and rows[2]["speedup_vs_torch"] == 4.0
    assert rows[3]["speedup_vs_torch"] is None and rows[3]["time_vs_floor"] is None


def test_targets_verdicts():
    def row(name, batch, seconds):
        return {"variant": name, "batch_size": batch, "status": "ok",
                "step_seconds": {"median": seconds}}

    results = []
    for batch, fused, unfused, torch, floor in [(512, 1.0, 1.5, 1.2, 0.5),
                                                (16384, 3.0, 3.5, 2.9, 2.8)]:
        size_rows = [row("cupy-fused", batch, fused), row("cupy-unfused", batch, unfused),
                     row("torch", batch, torch), row("gemm-floor", batch, floor)]
        bench.add_ratios(size_rows)
        results += size_rows
    record = {"config": {"device": "gpu"}, "results": results}
    torch_goal, floor_goal, fused_goal = bench_report.evaluate_targets(record)
    assert torch_goal["passed"] is False  # 2.9 / 3.0 < 1 at 16384
    assert torch_goal["values"][512] == pytest.approx(1.2)
    assert floor_goal["passed"] is True and list(floor_goal["values"]) == [16384]
    assert fused_goal["passed"] is True and fused_goal["values"] == {512: 1.5}
    record["config"]["device"] = "cpu"  # numpy is the CPU's main variant; none measured here
    assert [t["passed"] for t in bench_report.evaluate_targets(record)] == [None, None]


# -- the variants ------------------------------------------------------------------------
class SpyArrays:
    """NumPy, recording the operand shapes of every matmul."""

    def __init__(self):
        self.gemms = []

    def __getattr__(self, name):
        return getattr(np, name)

    def matmul(self, a, b, out=None):
        self.gemms.append((a.shape, b.shape))
        return np.matmul(a, b, out=out)


def test_gemm_floor_runs_exactly_the_gemms_of_a_training_step():
    workload = Workload(hidden=(24, 16), samples=64)
    step_spy, floor_spy = SpyArrays(), SpyArrays()
    model = GpunetVariant("numpy", gn.get_backend("cpu"), NumpyOps(step_spy), workload)
    with model.active():
        model.step_at(32)()
    floor = GemmFloorVariant(SimpleNamespace(name="cpu", xp=floor_spy), workload)
    floor.step_at(32)()
    assert sorted(floor_spy.gemms) == sorted(step_spy.gemms)
    assert len(floor_spy.gemms) == floor.details()["gemms_per_step"] == 3 * 3 - 1


def test_epoch_visits_every_sample_once_in_batches():
    variant = GpunetVariant("numpy", gn.get_backend("cpu"), NumpyOps(np),
                            Workload(hidden=(8,), samples=100))
    seen = []
    train_step = variant.train_step
    variant.train_step = lambda xb, yb: (seen.append(len(xb)), train_step(xb, yb))
    with variant.active():
        epoch = variant.epoch_at(32)
        assert seen == [4]  # the last batch's shape, warmed up untimed
        seen.clear()
        epoch()
    assert seen == [32, 32, 32, 4]
    assert np.isfinite(variant.last_loss())


def test_ops_are_swapped_only_while_active():
    backend = gn.get_backend("cpu")
    original, ops = backend.ops, NumpyOps(np)
    variant = GpunetVariant("numpy", backend, ops, Workload(hidden=(8,), samples=16))
    assert backend.ops is original
    with variant.active():
        assert backend.ops is ops
    assert backend.ops is original


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
def test_torch_variant_trains_with_the_multi_tensor_optimizer_on_the_cpu():
    from gpunet.bench.torch_variant import TorchVariant

    variant = TorchVariant("cpu", Workload(hidden=(8,), samples=64), tf32=False)
    assert variant.details()["optimizer_impl"] == "foreach"
    with variant.active():
        step = variant.step_at(16)
        step()
        first = variant.last_loss()
        for _ in range(20):
            step()
    assert np.isfinite(first) and variant.last_loss() < first  # it learns the fixed batch


@pytest.mark.gpu
def test_the_gpu_variants_run_a_tiny_sweep(tmp_path):
    """cupy-unfused, cupy-fused and cupy-graph (the captured static step) at two batch sizes
    on the GPU: every row measured, each variant learning (its last loss finite)."""
    argv = [a if a != "cpu" else "gpu" for a in TINY] + [
        "--variants", "cupy-unfused", "cupy-fused", "cupy-graph", "--out", str(tmp_path)]
    assert bench.run(parse(argv)) == 0
    record = json.loads((tmp_path / "bench.json").read_text())
    assert record["config"]["variants"] == ["cupy-unfused", "cupy-fused", "cupy-graph"]
    assert [row["status"] for row in record["results"]] == ["ok"] * 6
    assert all(np.isfinite(row["final_loss"]) for row in record["results"])


# -- a tiny real sweep and its files -----------------------------------------------------
@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    status = bench.run(parse(TINY + ["--out", str(out)]))
    return status, out


def test_tiny_sweep_writes_a_complete_record(tiny_sweep):
    status, out = tiny_sweep
    assert status == 0
    record = json.loads((out / "bench.json").read_text())
    assert record["schema"] == bench_report.SCHEMA
    assert set(record) == {"schema", "config", "environment", "variants", "skipped_variants",
                           "results", "targets"}
    config, env = record["config"], record["environment"]
    assert config["layers"] == [784, 16, 10] and config["batch_sizes"] == [8, 32]
    assert config["dataset_samples"] == 100 and config["dtype"] == "float32"
    for key in ("date", "device_name", "numpy", "cpu_model", "cpu_count", "blas",
                "thread_variables", "load_average_start", "load_average_end", "tf32"):
        assert key in env
    assert env["numpy"] == np.__version__ and env["tf32"] is False
    names = config["variants"]
    assert ("torch" in names) == HAS_TORCH and set(record["variants"]) == set(names)
    assert len(record["results"]) == 2 * len(names)
    for row in record["results"]:
        assert row["status"] == "ok" and row["steps"] == 2 and row["repeats"] == 2
        for key in ("step_seconds", "samples_per_second"):
            s = row[key]
            assert 0 < s["min"] <= s["median"] <= s["max"]
        has_epoch = row["variant"] != "gemm-floor"
        assert (row["epoch_seconds"] is not None) == has_epoch
        assert (row["final_loss"] is not None) == has_epoch
        assert row["launches"] is None  # not counted on the CPU


def test_tiny_sweep_csv_markdown_and_plots(tiny_sweep):
    _, out = tiny_sweep
    record = json.loads((out / "bench.json").read_text())
    with open(out / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == bench_report.CSV_FIELDS
    assert [(r["variant"], int(r["batch_size"])) for r in rows] == [
        (r["variant"], r["batch_size"]) for r in record["results"]]
    first = record["results"][0]
    assert float(rows[0]["step_ms_median"]) == pytest.approx(
        first["step_seconds"]["median"] * 1e3)
    markdown = (out / "bench.md").read_text()
    assert markdown.startswith("| batch | variant | samples/s |")
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == len(record["results"]) + 1  # and the header
    pictures = [out / "throughput.png", out / "speedup.png"]
    if HAS_MATPLOTLIB:
        assert (out / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "speedup.png").exists() == HAS_TORCH
    else:
        assert not any(p.exists() for p in pictures)


def test_terminal_table_shows_out_of_memory_rows():
    rows = bench.sweep([FakeVariant(limit=8)], bench.Settings((4, 16), 1, 1, 0, 0, 0.01))
    record = {"config": {"device": "cpu"}, "results": rows}
    lines = bench_report.format_table(record).splitlines()
    assert lines[0].split()[:3] == ["batch", "variant", "samples/s"]
    assert lines[2].split() == ["16", "fake", "out", "of", "memory"]


def test_quick_tiny_sweep_prints_table_and_targets(capsys):
    argv = ["--quick", "--device", "cpu", "--hidden", "8", "--samples", "64",
            "--batch-sizes", "16", "--variants", "numpy", "gemm-floor", "--steps", "1"]
    assert bench.run(parse(argv)) == 0
    captured = capsys.readouterr()
    assert "[1/1] batch 16: numpy " in captured.err
    assert "numpy step within 1.15x of the GEMM floor at batch >= 16384" in captured.out
    assert "not measured" in captured.out


def test_static_step_variant_walks_epochs_and_repeated_steps():
    """numpy-static (the CPU's static step; the GPU's cupy-graph is it, captured): an epoch
    is every batch of the data, the last one smaller; a step larger than the data repeats
    rows; the loss stays finite."""
    variant = bench.build_variant("numpy-static", gn.get_backend("cpu"),
                                  Workload(hidden=(8,), samples=40), tf32=False)
    with variant.active():
        epoch = variant.epoch_at(16)       # 16 + 16 + 8, run once as its warm-up
        epoch()
        assert variant.optimizer.step_count == 6
        step = variant.step_at(64)         # 64 > 40 samples: one batch of repeated rows
        for _ in range(3):
            step()
        assert variant.optimizer.step_count == 9
        assert math.isfinite(variant.last_loss())
    variant.release()
    assert variant.runners == []
