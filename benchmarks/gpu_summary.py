"""The device check's bookkeeping: probe the GPU, read what each stage left, write summary.json.

Used by ``benchmarks/gpu_check.sh`` (stdlib only at import, so it also loads as a pytest plugin):

- ``python benchmarks/gpu_summary.py probe FILE``: device, driver and library versions as JSON;
  exit 1 with a ``FAIL:`` line when no GPU answers through CuPy.
- ``python benchmarks/gpu_summary.py dirname``: ``<gpu>-<date>``, the folder name under
  ``benchmarks/results/``.
- ``python benchmarks/gpu_summary.py summarize --out summary.json ...``: pass/fail counts from
  the JUnit XML, the sanitizer verdicts, the headline timings and one verdict; exit 1 unless
  the verdict is ``pass`` (or ``dry-run``).
- ``pytest -p benchmarks.gpu_summary``: records each test's markers in the JUnit XML, so the
  GPU-marked cases can be counted apart.
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

SCHEMA = "gpunet-gpu-check/1"
MARKERS_PROPERTY = "markers"  # the JUnit property this plugin writes and junit_results reads
GPU_MARK = "gpu"
GPU_SKIP_TEXT = "GPU backend unavailable"  # tests/conftest.py's skip reason
TIMEOUT_CODES = (124, 137)  # timeout(1): the signal sent, KILL sent
# The stages a verdict of "pass" needs, per mode of gpu_check.sh (sanitizers are extra).
REQUIRED = {"check": ("warm", "tests", "kernels", "graph", "sweep"),
            "full-sweep": ("warm", "tests", "sweep"), "dry-run": ("tests", "sweep")}
MESSAGE_CHARS = 300
LISTED_SKIPS = 20  # skipped GPU tests named in summary.json (all are counted)


# -- pytest plugin -----------------------------------------------------------------------
def pytest_collection_modifyitems(items):
    """Record each test's marker names as a JUnit property (``markers="gpu,slow"``)."""
    for item in items:
        names = sorted({mark.name for mark in item.iter_markers()} - {"parametrize"})
        item.user_properties.append((MARKERS_PROPERTY, ",".join(names)))


# -- reading the stages' output -------------------------------------------------------------
def _short(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 3] + "..."


def _outcome(case) -> tuple[str, str]:
    """(outcome, message) of one ``<testcase>``: error, failed, xfailed, skipped or passed."""
    for tag, outcome in (("error", "error"), ("failure", "failed")):
        node = case.find(tag)
        if node is not None:
            return outcome, node.get("message") or (node.text or "")
    node = case.find("skipped")
    if node is not None:
        kind = "xfailed" if node.get("type") == "pytest.xfail" else "skipped"
        return kind, node.get("message") or (node.text or "")
    return "passed", ""


def junit_results(path) -> dict:
    """Counts per outcome (all tests and the GPU-marked ones), every failure and error with
    its message, and the skipped GPU tests (counted; the first LISTED_SKIPS named), from a
    pytest JUnit XML file. ``gpu`` is None when the markers were not recorded."""
    root = ET.parse(path).getroot()
    outcomes = ("passed", "failed", "error", "skipped", "xfailed")
    counts = dict.fromkeys(outcomes, 0)
    gpu = dict.fromkeys(outcomes, 0)
    marked = False
    problems, gpu_skips = [], []
    for case in root.iter("testcase"):
        outcome, message = _outcome(case)
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        marked |= MARKERS_PROPERTY in props
        is_gpu = GPU_MARK in (props.get(MARKERS_PROPERTY) or "").split(",")
        counts[outcome] += 1
        if is_gpu:
            gpu[outcome] += 1
        if outcome in ("failed", "error"):
            problems.append({"test": name, "outcome": outcome, "message": _short(message)})
        elif outcome == "skipped" and (is_gpu or GPU_SKIP_TEXT in message):
            gpu_skips.append({"test": name, "message": _short(message)})
    return {"total": sum(counts.values()), **counts,
            "gpu": dict(gpu, total=sum(gpu.values())) if marked else None,
            "failures": problems, "gpu_skipped": len(gpu_skips),
            "gpu_skips": gpu_skips[:LISTED_SKIPS], "skip_reasons": _by_reason(gpu_skips)}


def _by_reason(skips: list[dict]) -> list[dict]:
    """Skipped tests grouped by their reason: ``{"reason", "count", "example"}``, the most
    frequent first."""
    groups: dict[str, dict] = {}
    for skip in skips:
        group = groups.setdefault(skip["message"], {"reason": skip["message"], "count": 0,
                                                    "example": skip["test"]})
        group["count"] += 1
    return sorted(groups.values(), key=lambda g: -g["count"])


def read_stages(path) -> dict:
    """``stages.tsv`` (name, exit code or ``-``, seconds, budget, note) as a dict by name."""
    stages = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        name, rc, seconds, budget, *note = line.split("\t")
        stages[name] = {"rc": None if rc == "-" else int(rc), "seconds": int(seconds),
                        "budget_s": int(budget), "note": note[0] if note else ""}
    return stages


_MEMCHECK = re.compile(r"ERROR SUMMARY: (\d+) error")
_RACECHECK = re.compile(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?")


def sanitizer_result(log_text: str, stage: dict | None) -> dict:
    """What one compute-sanitizer run showed: ``clean``; ``errors``; ``workload failed``
    (no sanitizer error, but the training run or a test failed); ``refused`` (no summary
    line: it did not get to instrument); ``timed out``; or ``not run`` with the reason."""
    if stage is None or stage["rc"] is None:
        return {"status": "not run", "why": (stage or {}).get("note", ""), "errors": None}
    found = _MEMCHECK.search(log_text) or _RACECHECK.search(log_text)
    errors = None if found is None else int(found.groups()[-1])
    if stage["rc"] in TIMEOUT_CODES:
        status = "timed out"
    elif errors is None:
        status = "refused"
    elif errors:
        status = "errors"
    else:
        status = "workload failed" if stage["rc"] else "clean"
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    return {"status": status, "errors": errors, "rc": stage["rc"],
            "last_line": _short(lines[-1] if lines else "")}


def kernel_headlines(record: dict) -> dict:
    """The per-kernel and training-step numbers of ``gpu_check.py``'s JSON, condensed."""
    return {
        "copy_GBps": record.get("copy_GBps"),
        "kernels": [{"kernel": r["kernel"], "fused_us": r["fused_ms"] * 1e3,
                     "unfused_us": r["unfused_ms"] * 1e3, "speedup": r["speedup"],
                     "fused_GBps": r["fused_GBps"]} for r in record.get("kernels", [])],
        "train_step": record.get("train_step", []),
        "gemm_routes": record.get("gemm_routes"),
        "suggested_gemm_routes": record.get("suggested_gemm_routes"),
    }


def graph_headlines(record: dict) -> list[dict]:
    """Per GEMM route of ``graph_probe.py``: whether it ran, captured and replayed right, at
    each batch size (the first error kept)."""
    rows = []
    for r in record.get("routes", []):
        error = r.get("eager_error") or r.get("capture_error")
        rows.append({"route": r["route"], "batch": r["batch"],
                     "captured": "capture_error" not in r and "eager_error" not in r,
                     "replay_ok": r.get("replay_ok"), "replay_us": r.get("replay_us"),
                     "eager_us": r.get("eager_us"), "error": _short(error) if error else None})
    return rows


def sweep_headlines(record: dict) -> list[dict]:
    """One line per (variant, batch size) of a ``gpunet bench`` record."""
    rows = []
    for r in record.get("results", []):
        row = {"variant": r["variant"], "batch_size": r["batch_size"], "status": r["status"]}
        if r["status"] == "ok":
            row.update(samples_per_s=r["samples_per_second"]["median"],
                       step_ms=r["step_seconds"]["median"] * 1e3,
                       speedup_vs_torch=r.get("speedup_vs_torch"),
                       time_vs_floor=r.get("time_vs_floor"))
        else:
            row["message"] = _short(r.get("message"))
        rows.append(row)
    return rows


# -- the verdict ---------------------------------------------------------------------------
def _stage_problem(name: str, stage: dict | None) -> str | None:
    if stage is None:
        return f"{name}: not run"
    if stage["rc"] is None:
        return f"{name}: not run: {stage['note']}" if stage["note"] else f"{name}: not run"
    if stage["rc"] in TIMEOUT_CODES:
        return f"{name}: timed out after {stage['budget_s']} s"
    if stage["rc"]:
        return f"{name}: exit status {stage['rc']}"
    return None


def _failed(label: str, tests: dict) -> list[str]:
    """A problem line for failures and errors (up to five names), or nothing."""
    if not (tests["failed"] or tests["error"]):
        return []
    names = ", ".join(f["test"] for f in tests["failures"][:5])
    more = "" if len(tests["failures"]) <= 5 else f" (+{len(tests['failures']) - 5} more)"
    return [f"{label}: {tests['failed']} failed, {tests['error']} errors: {names}{more}"]


def _blind(tests: dict) -> list[str]:
    """A problem line when GPU tests skipped finding no GPU (the probe found one)."""
    groups = [g for g in tests.get("skip_reasons", []) if GPU_SKIP_TEXT in g["reason"]]
    if not groups:
        return []
    return [f"tests: {sum(g['count'] for g in groups)} GPU tests skipped finding no GPU, "
            f"e.g. {groups[0]['reason']}"]


def _test_skips(label: str, tests: dict) -> list[str]:
    """One line per reason for GPU tests skipped for a reason other than a missing GPU."""
    return [f"{label}: {g['count']} skipped: {g['reason']} (e.g. {g['example']})"
            for g in tests.get("skip_reasons", []) if GPU_SKIP_TEXT not in g["reason"]]


def verdict(summary: dict) -> tuple[str, list[str], list[str], list[str]]:
    """``(verdict, problems, skips, unverified)``: ``pass`` only when the GPU answered, the
    mode's required stages ran and exited 0, no test failed or errored, GPU tests ran and
    none of them found no GPU, no sanitizer found an error or failed a test, and no sweep
    row failed. Skips are counted apart, each with its reason: GPU tests skipped for another
    reason (e.g. two GPUs needed) and sweep variants this machine lacks (e.g. PyTorch without
    CUDA). A sanitizer that the runtime refuses, that is not installed or that ran out of
    time is ``unverified``, not a failure. A dry run's verdict is ``dry-run``, never
    ``pass``."""
    problems, skips, unverified = [], [], []
    stages = summary["stages"]
    if not summary["device"].get("gpu"):
        problems.append(f"no usable GPU: {summary['device'].get('reason', 'unknown')}")
    for name in REQUIRED[summary["mode"]]:
        problem = _stage_problem(name, stages.get(name))
        if problem:
            problems.append(problem)
    tests = summary["tests"]
    if tests is None:
        if (stages.get("tests") or {}).get("rc") is not None:
            problems.append("tests: no JUnit XML (the run did not finish)")
    else:
        problems += _failed("tests", tests)
        problems += _blind(tests)
        skips += _test_skips("tests", tests)
        if not (tests["gpu"] or {}).get("passed"):
            problems.append("tests: no GPU-marked test passed")
    for tool, result in summary["sanitizers"].items():
        status, sanitized = result["status"], result.get("tests")
        if status == "errors":
            problems.append(f"{tool}: {result['errors']} errors (see sanitizer.log)")
        elif status == "workload failed":
            problems.append(f"{tool}: no sanitizer error, but the run under it exited "
                            f"{result['rc']} (see sanitizer.log)")
        elif status == "not run":
            unverified.append(f"{tool}: not run: {result['why']}")
        elif status != "clean":
            unverified.append(f"{tool}: {status}")
        if status in ("clean", "errors", "workload failed"):
            if sanitized is None:
                unverified.append(f"{tool}: no JUnit XML from the kernel tests under it")
            else:
                problems += _failed(f"tests under {tool}", sanitized)
                problems += _blind(sanitized)
                skips += _test_skips(f"tests under {tool}", sanitized)
    bad = [r for r in summary["sweep"] or [] if r["status"] == "error"]
    if bad:
        problems.append(f"sweep: {len(bad)} measurements failed, e.g. {bad[0]['variant']} at "
                        f"batch {bad[0]['batch_size']}: {bad[0].get('message', '')}")
    skips += [f"sweep: variant {name} skipped: {why}"
              for name, why in (summary.get("sweep_skipped") or {}).items()]
    if summary["mode"] == "dry-run":
        return "dry-run", problems, skips, unverified
    return ("pass" if not problems else "fail"), problems, skips, unverified


def _load_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _junit_or_none(path):
    try:
        return junit_results(path)
    except (OSError, ET.ParseError):
        return None


def build_summary(*, device: dict, stages: dict, tests_xml, kernels_json, sweep_json,
                  sanitizers: dict, graph_json=None, mode: str = "check",
                  commit: str = "") -> dict:
    """summary.json: the device, each stage's exit status and time, the test counts, the
    sanitizer verdicts, the headline timings and the verdict. ``sanitizers`` maps a tool
    name to ``(log path, JUnit XML path)``; missing files count as stages that did not
    finish, never as passes."""
    kernels, sweep = _load_json(kernels_json), _load_json(sweep_json)
    graph = _load_json(graph_json) if graph_json else None
    sanitized = {}
    for tool, (log_path, xml_path) in sanitizers.items():
        try:
            text = Path(log_path).read_text(errors="replace")
        except OSError:
            text = ""
        sanitized[tool] = dict(sanitizer_result(text, stages.get(tool)),
                               tests=_junit_or_none(xml_path))
    date = device.get("date") or datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    summary = {
        "schema": SCHEMA, "mode": mode, "date": date, "commit": commit,
        "result_dir": result_dir_name(device.get("device_name") if device.get("gpu") else None,
                                      date[:10]),
        "device": device, "stages": stages, "tests": _junit_or_none(tests_xml),
        "sanitizers": sanitized,
        "timings": kernel_headlines(kernels) if kernels else None,
        "graph": graph_headlines(graph) if graph else None,
        "sweep": sweep_headlines(sweep) if sweep else None,
        "sweep_skipped": (sweep or {}).get("skipped_variants") or {},
        "total_s": sum(s["seconds"] for s in stages.values()),
    }
    summary["verdict"], summary["problems"], summary["skips"], summary["unverified"] = \
        verdict(summary)
    return summary


def verdict_line(summary: dict) -> str:
    """The one line that ends the log: PASS/FAIL/DRY RUN, the GPU test counts, what failed."""
    tests = summary["tests"] or {}
    gpu = tests.get("gpu") or {}
    counts = (f"{tests.get('passed', 0)}/{tests.get('total', 0)} tests passed "
              f"({gpu.get('passed', 0)}/{gpu.get('total', 0)} GPU-marked)")
    head = {"pass": "PASS", "fail": "FAIL", "dry-run": "DRY RUN (no GPU check counted)"}[
        summary["verdict"]]
    parts = [f"gpu_check: {head}: {counts}"]
    parts += [f"problem: {p}" for p in summary["problems"]]
    parts += [f"skipped: {s}" for s in summary["skips"]]
    parts += [f"unverified: {u}" for u in summary["unverified"]]
    parts.append(f"result folder name: benchmarks/results/{summary['result_dir']}/")
    return "\n".join(parts)


# -- the device ----------------------------------------------------------------------------
def result_dir_name(device_name: str | None, date: str) -> str:
    """``nvidia-h200-2026-12-01``: the device's name in lower-case words joined by dashes,
    then the date (``no-gpu`` where none answers)."""
    slug = re.sub(r"[^a-z0-9]+", "-", (device_name or "no gpu").lower()).strip("-")
    return f"{slug}-{date}"


def _smi_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


def probe() -> dict:
    """Whether a GPU answers through CuPy (and why not), with the environment ``gpunet bench``
    records (device name, NVIDIA driver, CUDA runtime and driver API, CuPy, NumPy, PyTorch)
    plus the NVRTC version."""
    import gpunet as gn
    from gpunet.bench import report as bench_report

    ok, reason = gn.gpu_status()
    info = {"gpu": ok, "reason": reason}
    info.update(bench_report.environment(gn.get_backend("gpu" if ok else "cpu"), tf32=False))
    if ok:
        from cupy.cuda import nvrtc  # cupy_backends.cuda.libs.nvrtc, as CuPy exports it

        info["nvrtc"] = ".".join(map(str, nvrtc.getVersion()))
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="write the device and versions as JSON; 1 without a GPU")
    p.add_argument("file")
    sub.add_parser("dirname", help="print <gpu>-<date> for benchmarks/results/")
    s = sub.add_parser("summarize", help="write summary.json and print the verdict")
    s.add_argument("--out", required=True, help="summary.json to write")
    s.add_argument("--device", required=True, help="the probe's JSON")
    s.add_argument("--stages", required=True, help="stages.tsv")
    s.add_argument("--tests", required=True, help="the tests stage's JUnit XML")
    s.add_argument("--kernels", required=True, help="gpu_check.py's JSON")
    s.add_argument("--sweep", required=True, help="gpunet bench's bench.json")
    s.add_argument("--graph", help="graph_probe.py's JSON")
    s.add_argument("--sanitizer", nargs=3, action="append", default=[],
                   metavar=("TOOL", "LOG", "XML"), help="a sanitizer's log and JUnit XML")
    s.add_argument("--mode", choices=sorted(REQUIRED), default="check",
                   help="gpu_check.sh's mode: which stages are required (dry-run: never pass)")
    s.add_argument("--commit", default="")
    args = parser.parse_args(argv)

    if args.command == "dirname":
        print(result_dir_name(_smi_name(), datetime.datetime.now(datetime.timezone.utc)
                              .strftime("%Y-%m-%d")))
        return 0
    if args.command == "probe":
        info = probe()
        Path(args.file).write_text(json.dumps(info, indent=1) + "\n")
        if not info["gpu"]:
            print(f"FAIL: no usable GPU through CuPy: {info['reason']}")
            return 1
        print(f"GPU: {info['device_name']}, driver {info['nvidia_driver_version']}, CUDA "
              f"runtime {info['cuda_runtime']}, CuPy {info['cupy']}, NumPy {info['numpy']}, "
              f"NVRTC {info['nvrtc']}")
        return 0
    device = _load_json(args.device) or {"gpu": False, "reason": "the probe wrote nothing"}
    summary = build_summary(
        device=device, stages=read_stages(args.stages), tests_xml=args.tests,
        kernels_json=args.kernels, sweep_json=args.sweep, graph_json=args.graph,
        sanitizers={tool: (log, xml) for tool, log, xml in args.sanitizer},
        mode=args.mode, commit=args.commit)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    print(verdict_line(summary))
    return 0 if summary["verdict"] in ("pass", "dry-run") else 1


if __name__ == "__main__":
    sys.exit(main())
