"""The device check's CPU-checkable parts: the script's syntax, its failure without a GPU and
its dry run, the JUnit reading, the sanitizer verdicts and summary.json's verdict."""
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import gpunet as gn

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
MAX_FILES = 8
GPU_HERE = gn.gpu_status()[0]


def load(name):
    """``benchmarks/NAME.py`` as module ``NAME`` (the scripts import each other so)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_summary = load("gpu_summary")
SAMPLE_TESTS = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("fixture broke")

def test_passes(): pass
def test_fails(): assert 1 == 2, "one is not two"
def test_errors(broken): pass
def test_skips(): pytest.skip("not here")
@pytest.mark.xfail(reason="known")
def test_xfails(): assert False
@pytest.mark.gpu
def test_gpu_passes(): pass
@pytest.mark.gpu
@pytest.mark.parametrize("n", [1, 2])
def test_gpu_skips(n): pytest.skip("GPU backend unavailable: no device")
"""


def run_script(tmp_path, *args):
    env = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sample_junit(tmp_path_factory):
    """The JUnit XML of a pytest run of SAMPLE_TESTS with the markers plugin loaded."""
    folder = tmp_path_factory.mktemp("sample")
    (folder / "test_sample.py").write_text(SAMPLE_TESTS)
    xml = folder / "sample.xml"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "-p", "benchmarks.gpu_summary", "-o", "markers=gpu: a GPU test",
                    f"--junitxml={xml}", "test_sample.py"],
                   cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    return xml


def test_junit_results_counts_each_outcome_and_the_gpu_marked_tests(sample_junit):
    got = gpu_summary.junit_results(sample_junit)
    assert {k: got[k] for k in ("total", "passed", "failed", "error", "skipped", "xfailed")} \
        == {"total": 8, "passed": 2, "failed": 1, "error": 1, "skipped": 3, "xfailed": 1}
    assert got["gpu"] == {"total": 3, "passed": 1, "failed": 0, "error": 0, "skipped": 2,
                          "xfailed": 0}
    failures = {f["test"].split("::")[1]: f for f in got["failures"]}
    assert set(failures) == {"test_fails", "test_errors"}
    assert "one is not two" in failures["test_fails"]["message"]
    assert failures["test_errors"]["outcome"] == "error"
    assert got["gpu_skipped"] == 2
    assert [s["test"].split("::")[1] for s in got["gpu_skips"]] == \
        ["test_gpu_skips[1]", "test_gpu_skips[2]"]


def sanitizer_log(tool, errors):
    line = (f"========= ERROR SUMMARY: {errors} errors" if tool == "memcheck" else
            f"========= RACECHECK SUMMARY: {errors} hazards displayed ({errors} errors, "
            f"0 warnings)")
    return f"train 3-7-5 cublas sgd: loss 1.0\n{line}\n"


@pytest.mark.parametrize("tool", ["memcheck", "racecheck"])
@pytest.mark.parametrize("errors,rc,status", [
    (0, 0, "clean"), (3, 86, "errors"), (0, 1, "workload failed")])
def test_sanitizer_result_reads_the_summary_line(tool, errors, rc, status):
    stage = {"rc": rc, "seconds": 9, "budget_s": 40, "note": ""}
    got = gpu_summary.sanitizer_result(sanitizer_log(tool, errors), stage)
    assert (got["status"], got["errors"]) == (status, errors)


def test_sanitizer_result_without_a_summary_line_is_refused_or_timed_out_or_not_run():
    log = "========= Error: Target application terminated before first instrumented API call"
    stage = {"rc": 1, "seconds": 2, "budget_s": 40, "note": ""}
    assert gpu_summary.sanitizer_result(log, stage)["status"] == "refused"
    assert gpu_summary.sanitizer_result("", dict(stage, rc=124))["status"] == "timed out"
    not_run = gpu_summary.sanitizer_result("", dict(stage, rc=None, note="not installed"))
    assert (not_run["status"], not_run["why"]) == ("not run", "not installed")


def test_result_dir_name():
    assert gpu_summary.result_dir_name("NVIDIA H200", "2026-12-01") == "nvidia-h200-2026-12-01"
    assert gpu_summary.result_dir_name(None, "2026-12-01") == "no-gpu-2026-12-01"


# -- summary.json's verdict on a synthetic complete run -------------------------------------
def junit(path, cases, skip_reason="GPU backend unavailable"):
    """A JUnit XML file of (name, outcome, markers) cases; skips give ``skip_reason``."""
    body = []
    for name, outcome, markers in cases:
        inner = {"passed": "", "failed": '<failure message="boom">tb</failure>',
                 "skipped": f'<skipped type="pytest.skip" message="{skip_reason}"/>'
                 }[outcome]
        body.append(f'<testcase classname="tests.test_x" name="{name}"><properties>'
                    f'<property name="markers" value="{markers}"/></properties>{inner}'
                    f'</testcase>')
    path.write_text(f'<testsuites><testsuite name="pytest">{"".join(body)}</testsuite>'
                    f'</testsuites>')
    return path


@pytest.fixture
def good_run(tmp_path):
    """The inputs of a run in which everything passed."""
    stages = {name: {"rc": 0, "seconds": 5, "budget_s": 60, "note": ""}
              for name in ("probe", "warm", "tests", "canary", "memcheck", "racecheck",
                           "kernels", "graph", "sweep")}
    tests = junit(tmp_path / "pytest.xml", [("test_a[gpu]", "passed", "gpu"),
                                            ("test_a[cpu]", "passed", "")])
    sanitizers = {}
    for tool in ("memcheck", "racecheck"):
        (tmp_path / f"{tool}.log").write_text(sanitizer_log(tool, 0))
        junit(tmp_path / f"{tool}.xml", [("test_k", "passed", "gpu")])
        sanitizers[tool] = (tmp_path / f"{tool}.log", tmp_path / f"{tool}.xml")
    kernels = {"copy_GBps": 4000.0, "kernels": [
        {"kernel": "adamw_update", "fused_ms": 0.05, "unfused_ms": 0.4, "speedup": 8.0,
         "fused_GBps": 3500.0}], "train_step": [], "gemm_routes": [],
        "suggested_gemm_routes": []}
    sweep = {"results": [{"variant": "cupy-fused", "batch_size": 32, "status": "ok",
                          "samples_per_second": {"median": 1e5},
                          "step_seconds": {"median": 3.2e-4},
                          "speedup_vs_torch": 2.0, "time_vs_floor": 1.5}]}
    graph = {"routes": [{"route": "tiled", "batch": 32, "eager_ok": True, "eager_us": 9.0,
                         "replay_ok": True, "replay_us": 7.0},
                        {"route": "cupy.matmul", "batch": 32, "eager_ok": True,
                         "eager_us": 8.0, "capture_error": "NotImplementedError: no"}]}
    (tmp_path / "kernels.json").write_text(json.dumps(kernels))
    (tmp_path / "graph.json").write_text(json.dumps(graph))
    (tmp_path / "bench.json").write_text(json.dumps(sweep))
    return dict(device={"gpu": True, "reason": "ok", "device_name": "NVIDIA H200",
                        "date": "2026-12-01T10:00:00+00:00"},
                stages=stages, tests_xml=tests, kernels_json=tmp_path / "kernels.json",
                graph_json=tmp_path / "graph.json", sweep_json=tmp_path / "bench.json",
                sanitizers=sanitizers)


def test_a_complete_clean_run_passes(good_run):
    summary = gpu_summary.build_summary(**good_run)
    assert (summary["verdict"], summary["problems"], summary["skips"], summary["unverified"]) \
        == ("pass", [], [], [])
    assert summary["result_dir"] == "nvidia-h200-2026-12-01"
    assert summary["tests"]["gpu"]["passed"] == 1
    assert summary["timings"]["kernels"][0]["fused_us"] == pytest.approx(50.0)
    assert summary["sweep"][0]["step_ms"] == pytest.approx(0.32)
    assert [(g["route"], g["captured"], g["replay_ok"]) for g in summary["graph"]] == \
        [("tiled", True, True), ("cupy.matmul", False, None)]
    json.dumps(summary, allow_nan=False)
    assert gpu_summary.verdict_line(summary).startswith(
        "gpu_check: PASS: 2/2 tests passed (1/1 GPU-marked)")


def spoil(run, what):
    """Change one thing of a good run."""
    stages, folder = run["stages"], Path(run["tests_xml"]).parent
    if what == "no gpu":
        run["device"] = {"gpu": False, "reason": "no CUDA device found"}
    elif what == "a test fails":
        junit(run["tests_xml"], [("test_a[gpu]", "failed", "gpu")])
    elif what == "a gpu test skips":
        junit(run["tests_xml"], [("test_a[gpu]", "passed", "gpu"),
                                 ("test_b[gpu]", "skipped", "gpu")])
    elif what == "no gpu test":
        junit(run["tests_xml"], [("test_a[cpu]", "passed", "")])
    elif what == "no junit":
        Path(run["tests_xml"]).unlink()
    elif what == "tests time out":
        stages["tests"]["rc"] = 124
    elif what == "kernels not run":
        stages["kernels"] = {"rc": None, "seconds": 0, "budget_s": 0, "note": "budget spent"}
    elif what == "warm fails":
        stages["warm"]["rc"] = 1
    elif what == "graph times out":
        stages["graph"]["rc"] = 124
    elif what == "memcheck errors":
        (folder / "memcheck.log").write_text(sanitizer_log("memcheck", 2))
        stages["memcheck"]["rc"] = 86
    elif what == "a test fails under racecheck":
        junit(folder / "racecheck.xml", [("test_k", "failed", "gpu")])
        stages["racecheck"]["rc"] = 1
    elif what == "a sweep row fails":
        sweep = json.loads(Path(run["sweep_json"]).read_text())
        sweep["results"].append({"variant": "torch", "batch_size": 32, "status": "error",
                                 "message": "RuntimeError: x"})
        Path(run["sweep_json"]).write_text(json.dumps(sweep))
    return run


@pytest.mark.parametrize("what,expected", [
    ("no gpu", "no usable GPU: no CUDA device found"),
    ("a test fails", "tests: 1 failed, 0 errors: tests.test_x::test_a[gpu]"),
    ("a gpu test skips", "tests: 1 GPU tests skipped finding no GPU"),
    ("no gpu test", "tests: no GPU-marked test passed"),
    ("no junit", "tests: no JUnit XML"),
    ("tests time out", "tests: timed out after 60 s"),
    ("kernels not run", "kernels: not run: budget spent"),
    ("warm fails", "warm: exit status 1"),
    ("graph times out", "graph: timed out after 60 s"),
    ("memcheck errors", "memcheck: 2 errors"),
    ("a test fails under racecheck", "tests under racecheck: 1 failed"),
    ("a sweep row fails", "sweep: 1 measurements failed, e.g. torch at batch 32"),
])
def test_anything_wrong_fails_the_verdict_and_is_named(good_run, what, expected):
    summary = gpu_summary.build_summary(**spoil(good_run, what))
    assert summary["verdict"] == "fail"
    assert any(p.startswith(expected) for p in summary["problems"]), summary["problems"]


def test_skips_are_counted_apart_from_failures_each_with_its_reason(good_run):
    folder = Path(good_run["tests_xml"]).parent
    junit(good_run["tests_xml"], [("test_a[gpu]", "passed", "gpu"),
                                  ("test_nccl[2]", "skipped", "gpu"),
                                  ("test_nccl[4]", "skipped", "gpu")],
          skip_reason="needs 2 GPUs, this machine has 1")
    junit(folder / "memcheck.xml", [("test_k", "passed", "gpu"), ("test_big", "skipped", "gpu")],
          skip_reason="the sanitizer's time budget is spent")
    sweep = json.loads(Path(good_run["sweep_json"]).read_text())
    sweep["skipped_variants"] = {"torch": "this PyTorch 2.11.0+cpu has no CUDA device"}
    Path(good_run["sweep_json"]).write_text(json.dumps(sweep))
    summary = gpu_summary.build_summary(**good_run)
    assert (summary["verdict"], summary["problems"]) == ("pass", [])
    assert summary["skips"] == [
        "tests: 2 skipped: needs 2 GPUs, this machine has 1 (e.g. tests.test_x::test_nccl[2])",
        "tests under memcheck: 1 skipped: the sanitizer's time budget is spent "
        "(e.g. tests.test_x::test_big)",
        "sweep: variant torch skipped: this PyTorch 2.11.0+cpu has no CUDA device"]
    line = gpu_summary.verdict_line(summary)
    assert "gpu_check: PASS" in line and "skipped: sweep: variant torch skipped" in line


def test_a_refused_or_missing_sanitizer_is_unverified_not_failed(good_run):
    good_run["stages"]["memcheck"] = {"rc": None, "seconds": 0, "budget_s": 0,
                                      "note": "refused by the runtime"}
    (Path(good_run["tests_xml"]).parent / "racecheck.log").write_text("no summary line\n")
    summary = gpu_summary.build_summary(**good_run)
    assert summary["verdict"] == "pass"
    assert summary["unverified"] == ["memcheck: not run: refused by the runtime",
                                     "racecheck: refused"]


def test_a_dry_run_never_passes_and_the_full_sweep_needs_no_kernel_timings(good_run):
    assert gpu_summary.build_summary(**good_run, mode="dry-run")["verdict"] == "dry-run"
    del good_run["stages"]["kernels"], good_run["stages"]["graph"]
    assert gpu_summary.build_summary(**good_run, mode="check")["verdict"] == "fail"
    assert gpu_summary.build_summary(**good_run, mode="full-sweep")["verdict"] == "pass"


# -- the helpers of the device scripts (import cupy, run nothing on a device) --------------
def test_sanitizer_keeps_small_shapes_only():
    pytest.importorskip("cupy")
    gpu_sanitize = load("gpu_sanitize")

    def item(name, **params):
        return types.SimpleNamespace(name=name, callspec=types.SimpleNamespace(params=params)
                                     if params else None)

    assert gpu_sanitize.is_small(item("test_a[7-300]", batch=300, classes=7, scale=1e30))
    assert gpu_sanitize.is_small(item("test_b[True]", relu=True))
    assert not gpu_sanitize.is_small(item("test_c[40000]", batch=40000))
    assert not gpu_sanitize.is_small(item("test_d[shape]", shape=(65536, 10)))
    assert not gpu_sanitize.is_small(item("test_batch_65536"))


def test_suggested_gemm_routes_split_where_the_winner_changes():
    pytest.importorskip("cupy")
    gpu_check = load("gpu_check")

    rows = [{"work": w, "winner": r} for w, r in
            [(10, "tiled"), (10, "tiled"), (1000, "tiled"), (10**5, "cublas"),
             (10**7, "cublas")]]
    assert gpu_check.suggest_routes(rows) == [(pytest.approx(10**4), "tiled")]
    mixed = rows + [{"work": 10, "winner": "cublas"}]  # a split verdict goes to cuBLAS
    assert gpu_check.suggest_routes(mixed) == [(pytest.approx(100), "cublas"),
                                               (pytest.approx(10**4), "tiled")]
    assert gpu_check.routes_json([(float("inf"), "tiled")]) == [["inf", "tiled"]]


# -- the script itself -------------------------------------------------------------------
def test_script_syntax():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_stand_in_rehearsal_runs_the_checks_own_tests_and_sweep():
    """benchmarks/gpu_check_standin.py times the stages as gpu_check.sh gives them."""
    rehearsal = load("gpu_check_standin")
    assert rehearsal.check_array("TESTS")[:3] == ["tests", "-m", "gpu"]
    assert rehearsal.check_array("SWEEP")[:2] == ["--device", "gpu"]
    commands = {name: command for name, command, _ in rehearsal.stages(Path("out"))}
    assert list(commands) == ["probe", "warm", "tests", "kernels", "graph", "sweep"]
    assert commands["tests"][3:3 + len(rehearsal.check_array("TESTS"))] == \
        rehearsal.check_array("TESTS")
    assert repr(rehearsal.check_array("SWEEP"))[1:-1] in commands["sweep"][-1]
    for name in ("kernels", "graph"):  # their whole code, at batches the emulator runs
        assert "--rehearsal" in commands[name][-1]


@pytest.mark.skipif(GPU_HERE, reason="a GPU answers here: the script would run the check")
def test_script_fails_loudly_without_a_gpu(tmp_path):
    result = run_script(tmp_path)
    assert result.returncode == 1, result.stdout[-2000:]
    assert "FAIL: the probe found no usable GPU" in result.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verdict"] == "fail"
    assert summary["problems"][0].startswith("no usable GPU: ")
    assert "gpu_check: FAIL" in (tmp_path / "out" / "gpu_check.log").read_text()


@pytest.mark.skipif(GPU_HERE, reason="a GPU answers here: gpu_check.sh runs the real thing")
def test_dry_run_writes_the_result_folder_and_never_passes(tmp_path):
    result = run_script(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:]
    out = tmp_path / "out"
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= MAX_FILES
    assert {"gpu_check.log", "summary.json", "pytest.xml", "bench.json", "bench.md"} <= \
        set(files), files
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "dry-run"
    assert summary["tests"]["gpu"]["total"] > 0  # every GPU case was collected
    assert [r["variant"] for r in summary["sweep"]] == ["numpy", "gemm-floor"]
    assert "gpu_check: DRY RUN" in result.stdout


def test_script_refuses_an_unknown_option_and_a_full_folder(tmp_path):
    assert run_script(tmp_path, "--bogus").returncode == 2
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    result = run_script(tmp_path)
    assert result.returncode == 2 and "is not empty" in result.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]


def test_sanitizer_run_leaves_out_large_tests_and_stops_at_its_deadline():
    pytest.importorskip("cupy")
    gpu_sanitize = load("gpu_sanitize")
    small = types.SimpleNamespace(name="test_a[1]", callspec=None)
    large = types.SimpleNamespace(name="test_a[65536]", callspec=None)
    items, deselected = [small, large], []
    config = types.SimpleNamespace(hook=types.SimpleNamespace(
        pytest_deselected=lambda items: deselected.extend(items)))
    plugin = gpu_sanitize.SmallShapesInTime(deadline=0.0)
    plugin.pytest_collection_modifyitems(config, items)
    assert (items, deselected) == ([small], [large])
    with pytest.raises(pytest.skip.Exception, match="time budget"):
        plugin.pytest_runtest_setup(small)
