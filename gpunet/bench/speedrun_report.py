"""The speedrun's report: per-variant summary, a table, and speedrun.json, .csv and .png."""
from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

from .report import pyplot

CSV_COLUMNS = ("variant", "seed", "accuracy", "seconds", "warmup_seconds", "compile_seconds",
               "steps")


def summarize(rows, target) -> list[dict]:
    """Per variant: mean accuracy, share of seeds at the target, time median/min/max."""
    out = []
    for name in dict.fromkeys(row["variant"] for row in rows):
        mine = [row for row in rows if row["variant"] == name]
        times = [row["seconds"] for row in mine]
        compiles = [row["compile_seconds"] for row in mine if row["compile_seconds"] is not None]
        warmups = [row.get("warmup_seconds") for row in mine if row.get("warmup_seconds")]
        out.append({
            "variant": name, "seeds": len(mine),
            "mean_accuracy": statistics.fmean(row["accuracy"] for row in mine),
            "reached": sum(row["accuracy"] >= target for row in mine) / len(mine),
            "seconds": {"median": statistics.median(times), "min": min(times),
                        "max": max(times)},
            "compile_seconds": statistics.median(compiles) if compiles else None,
            "warmup_seconds": statistics.median(warmups) if warmups else None})
    return out


def format_table(summary, target) -> str:
    """The summary as text, fastest median first."""
    lines = [f"{'variant':18s} {'mean acc':>9s} {'>= ' + format(target, '.1%'):>9s} "
             f"{'median s':>9s} {'min s':>8s} {'max s':>8s} {'warm-up s':>10s} {'compile s':>10s}"]
    for row in sorted(summary, key=lambda r: r["seconds"]["median"]):
        compile_s, warmup_s = (f"{row[key]:.2f}" if row[key] is not None else "-"
                               for key in ("compile_seconds", "warmup_seconds"))
        lines.append(f"{row['variant']:18s} {row['mean_accuracy']:9.2%} {row['reached']:9.0%} "
                     f"{row['seconds']['median']:9.3f} {row['seconds']['min']:8.3f} "
                     f"{row['seconds']['max']:8.3f} {warmup_s:>10s} {compile_s:>10s}")
    return "\n".join(lines)


def plot_curves(plt, record, path):
    """Test accuracy against counted wall time, one line per variant (its first seed)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown = set()
    for row in record["rows"]:
        if row["variant"] in shown:
            continue
        shown.add(row["variant"])
        seconds, accuracy = zip(*row["curve"])
        ax.plot(seconds, [100 * a for a in accuracy], marker="o", markersize=3,
                label=row["variant"])
    ax.axhline(100 * record["config"]["target"], color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("wall time, s (evaluation excluded but the last)")
    ax.set_ylabel("test accuracy, %")
    env = record["environment"]
    ax.set_title(f"Fashion-MNIST speedrun on {env.get('device_name')} (seed 0)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(record, out_dir) -> list[Path]:
    """speedrun.json and speedrun.csv and, with matplotlib, speedrun.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "speedrun.json", out / "speedrun.csv"]
    paths[0].write_text(json.dumps(record, indent=2) + "\n")
    with open(paths[1], "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(record["rows"])
    plt = pyplot()
    if plt is not None and record["rows"]:
        paths.append(plot_curves(plt, record, out / "speedrun.png"))
    return paths
