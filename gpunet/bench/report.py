"""What ``gpunet bench`` records and shows: the environment, the result record (bench.json),
the CSV, the terminal and Markdown tables, the targets, and the two plots (matplotlib optional).
"""
from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

SCHEMA = "gpunet-bench/1"
DTYPE = "float32"
CSV_FIELDS = ("variant", "batch_size", "status", "samples_per_second_median",
              "samples_per_second_min", "samples_per_second_max", "step_ms_median",
              "step_ms_min", "step_ms_max", "epoch_seconds_median", "epoch_seconds_min",
              "epoch_seconds_max", "speedup_vs_torch", "time_vs_floor", "steps", "repeats",
              "kernels_per_step", "final_loss", "message")
THREAD_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUPY_TF32",
                    "NVIDIA_TF32_OVERRIDE")


# -- environment -------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_info():
    """NumPy's BLAS library, threads and kernel (through threadpoolctl, when installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl to record it)"
    return [{k: pool.get(k) for k in ("internal_api", "version", "num_threads",
                                      "architecture", "threading_layer")}
            for pool in threadpool_info() if pool.get("user_api") == "blas"]


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver's version (e.g. ``580.65.06``) from ``nvidia-smi``, or None where it
    does not answer."""
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.split()
    return lines[0] if result.returncode == 0 and lines else None


def _gpu_info(xp) -> dict:
    runtime = xp.cuda.runtime
    props = runtime.getDeviceProperties(xp.cuda.Device().id)
    name = props["name"]
    return {"device_name": name.decode() if isinstance(name, bytes) else str(name),
            "compute_capability": xp.cuda.Device().compute_capability,
            "memory_gib": round(props["totalGlobalMem"] / 2 ** 30, 1),
            "cupy": xp.__version__, "cuda_runtime": runtime.runtimeGetVersion(),
            "cuda_driver_api_version": runtime.driverGetVersion(),
            "nvidia_driver_version": nvidia_driver_version()}


def _torch_info() -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    return {"version": torch.__version__, "cuda": torch.version.cuda,
            "threads": torch.get_num_threads(), "mkl": torch.backends.mkl.is_available(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def environment(backend, *, tf32: bool) -> dict:
    """Device, library versions, CPU and thread settings, and the load at the start."""
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "device": backend.name, "device_name": cpu_model(), "dtype": DTYPE,
            "tf32": bool(tf32) if backend.name == "gpu" else False,
            "python": platform.python_version(), "platform": platform.platform(),
            "numpy": np.__version__, "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "blas": _blas_info(), "torch": _torch_info(),
            "thread_variables": {k: os.environ.get(k) for k in THREAD_VARIABLES},
            "load_average_start": list(os.getloadavg())}
    if backend.name == "gpu":
        info.update(_gpu_info(backend.xp))
    return info


def config_of(args, settings, workload, device, variants) -> dict:
    """The sweep's configuration as recorded in bench.json."""
    return {"device": device, "variants": list(variants),
            "batch_sizes": list(settings.batch_sizes), "layers": list(workload.widths),
            "optimizer": workload.optimizer, "hyperparameters": workload.hyperparameters,
            "dataset_samples": workload.samples, "steps": settings.steps,
            "repeats": settings.repeats, "warmup": settings.warmup, "epochs": settings.epochs,
            "quick": bool(args.quick), "tf32": bool(args.tf32), "dtype": DTYPE}


def make_record(*, config, environment, variants, skipped, rows) -> dict:
    """The whole result: what bench.json holds."""
    environment = dict(environment, load_average_end=list(os.getloadavg()))
    record = {"schema": SCHEMA, "config": config, "environment": environment,
              "variants": variants, "skipped_variants": skipped, "results": rows}
    record["targets"] = evaluate_targets(record)
    return record


# -- targets -----------------------------------------------------------------------------
def _ok_rows(record, variant):
    return {r["batch_size"]: r for r in record["results"]
            if r["variant"] == variant and r["status"] == "ok"}


def _target(name, goal, values, passes):
    measured = {b: v for b, v in values.items() if v is not None}
    verdict = all(passes(v) for v in measured.values()) if measured else None
    return {"target": name, "goal": goal, "values": measured, "passed": verdict}


def evaluate_targets(record) -> list[dict]:
    """The issue's goals, each with its measured ratio per batch size and a verdict (None:
    not measured in this sweep). On the CPU the same goals are applied to ``numpy``."""
    main = "cupy-fused" if record["config"]["device"] == "gpu" else "numpy"
    rows = _ok_rows(record, main)
    targets = [
        _target(f"{main} >= 1.0x torch at every batch size", 1.0,
                {b: r["speedup_vs_torch"] for b, r in rows.items()}, lambda v: v >= 1.0),
        _target(f"{main} step within 1.15x of the GEMM floor at batch >= 16384", 1.15,
                {b: r["time_vs_floor"] for b, r in rows.items() if b >= 16384},
                lambda v: v <= 1.15),
    ]
    if main == "cupy-fused":
        unfused = _ok_rows(record, "cupy-unfused")
        targets.append(_target(
            "cupy-fused >= 1.3x cupy-unfused at batch <= 1024", 1.3,
            {b: unfused[b]["step_seconds"]["median"] / r["step_seconds"]["median"]
             for b, r in rows.items() if b <= 1024 and b in unfused}, lambda v: v >= 1.3))
    return targets


def format_targets(record) -> str:
    lines = ["targets (goals, not tests):"]
    for t in record["targets"]:
        verdict = {True: "PASS", False: "MISS", None: "not measured"}[t["passed"]]
        values = ", ".join(f"{b}: {v:.2f}x" for b, v in sorted(t["values"].items()))
        lines.append(f"  {verdict:12} {t['target']}" + (f"  [{values}]" if values else ""))
    return "\n".join(lines)


# -- tables and files --------------------------------------------------------------------
def _si(x: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def progress_line(k, total, batch_size, rows, seconds) -> str:
    parts = [f"{r['variant']} {_si(r['samples_per_second']['median'])}/s"
             if r["status"] == "ok" else f"{r['variant']} {r['status']}" for r in rows]
    return f"[{k}/{total}] batch {batch_size}: {', '.join(parts)} ({seconds:.1f} s)"


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table_rows(record):
    """Header and cells shared by the terminal and Markdown tables."""
    counted = any(r.get("launches") for r in record["results"])
    header = ("batch", "variant", "samples/s", "min-max", "step ms", "epoch s", "vs torch",
              "vs floor") + (("kernels/step",) if counted else ())
    cells = []
    for r in record["results"]:
        if r["status"] != "ok":
            cells.append((str(r["batch_size"]), r["variant"], r["status"])
                         + ("",) * (len(header) - 3))
            continue
        sps, epoch, launches = r["samples_per_second"], r["epoch_seconds"], r["launches"]
        row = (str(r["batch_size"]), r["variant"], f"{sps['median']:,.0f}",
               f"{sps['min']:,.0f}-{sps['max']:,.0f}", f"{r['step_seconds']['median'] * 1e3:.3f}",
               "-" if epoch is None else f"{epoch['median']:.2f}",
               _ratio(r["speedup_vs_torch"]), _ratio(r["time_vs_floor"]))
        if counted:
            row += ("-" if launches is None else f"{launches['kernels']:g}",)
        cells.append(row)
    return header, cells


def format_table(record) -> str:
    """The results as an aligned plain-text table."""
    header, cells = _table_rows(record)
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 1 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in [header, *cells]]
    return "\n".join(lines)


def format_markdown(record) -> str:
    """The results as a Markdown table (for the README)."""
    header, cells = _table_rows(record)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n\n```\n" + format_targets(record) + "\n```\n"


def _csv_row(r) -> dict:
    row = {k: r.get(k) for k in ("variant", "batch_size", "status", "speedup_vs_torch",
                                 "time_vs_floor", "steps", "repeats", "final_loss", "message")}
    for stat in ("median", "min", "max"):
        row[f"samples_per_second_{stat}"] = (r.get("samples_per_second") or {}).get(stat)
        step = (r.get("step_seconds") or {}).get(stat)
        row[f"step_ms_{stat}"] = None if step is None else step * 1e3
        row[f"epoch_seconds_{stat}"] = (r.get("epoch_seconds") or {}).get(stat)
    row["kernels_per_step"] = (r.get("launches") or {}).get("kernels")
    return row


def write_csv(record, path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in record["results"]:
            writer.writerow(_csv_row(r))


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or None where it is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(record, key):
    """Per variant: sorted batch sizes and ``key(row)`` of its successful rows."""
    series = {}
    for r in record["results"]:
        value = key(r) if r["status"] == "ok" else None
        if value is not None:
            series.setdefault(r["variant"], []).append((r["batch_size"], value))
    return {v: sorted(points) for v, points in series.items()}


def _title(record) -> str:
    env, cfg = record["environment"], record["config"]
    layers = "-".join(map(str, cfg["layers"]))
    return (f"{layers} MLP, {cfg['optimizer']}, {cfg['dtype']}"
            f"{' (TF32)' if cfg['tf32'] else ''} on {env['device_name']}")


def _line_style(record, variant) -> dict:
    """The same colour for a variant in both plots; the floor dashed."""
    return {"color": f"C{record['config']['variants'].index(variant)}", "marker": "o",
            "linestyle": "--" if variant == "gemm-floor" else "-"}


def _finish(plt, fig, ax, record, path) -> Path:
    """Batch-size axis (log2, labelled with the swept sizes), title, grid, legend; save."""
    from matplotlib.ticker import NullLocator

    sizes = record["config"]["batch_sizes"]
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(b) for b in sizes], rotation=45 if len(sizes) > 8 else 0)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set(xlabel="batch size", title=_title(record))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_throughput(plt, record, path) -> Path:
    """samples/s against batch size, log-log, one line per variant with its min-max band."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for variant, points in _series(record, lambda r: r["samples_per_second"]).items():
        sizes = [b for b, _ in points]
        ax.plot(sizes, [s["median"] for _, s in points], label=variant,
                **_line_style(record, variant))
        ax.fill_between(sizes, [s["min"] for _, s in points], [s["max"] for _, s in points],
                        color=_line_style(record, variant)["color"], alpha=0.2)
    ax.set(yscale="log", ylabel="training samples / s (median)")
    return _finish(plt, fig, ax, record, path)


def plot_speedup(plt, record, path) -> Path | None:
    """Each variant's throughput relative to torch per batch size (None without torch)."""
    series = _series(record, lambda r: r["speedup_vs_torch"])
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for variant, points in series.items():
        ax.plot([b for b, _ in points], [v for _, v in points], label=variant,
                **_line_style(record, variant))
    ax.axhline(1.0, color="black", linewidth=1, label="torch")
    ax.set(ylabel="throughput relative to torch (x)")
    return _finish(plt, fig, ax, record, path)


def write_outputs(record, out_dir) -> list[Path]:
    """bench.json, bench.csv, bench.md and, with matplotlib, throughput.png and speedup.png
    (the latter only when torch was measured); returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "bench.json", out / "bench.csv", out / "bench.md"]
    paths[0].write_text(json.dumps(record, indent=2) + "\n")
    write_csv(record, paths[1])
    paths[2].write_text(format_markdown(record))
    plt = pyplot()
    if plt is not None:
        paths.append(plot_throughput(plt, record, out / "throughput.png"))
        speedup = plot_speedup(plt, record, out / "speedup.png")
        if speedup is not None:
            paths.append(speedup)
    return paths
