"""gpunet speedrun: the quick version runs on the CPU and reports honestly (needs the
Fashion-MNIST files, which a checkout ships; skips with the reason where they are absent)."""
import csv
import json

import pytest

import gpunet as gn
from gpunet.bench import speedrun, speedrun_report
from gpunet.cli import main


def test_quick_speedrun_on_the_cpu(fashion_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["speedrun", "--quick", "--device", "cpu", "--seeds", "1", "--variants",
                 "gpunet", "--out", str(out), "--no-download"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].split()[:2] == ["variant", "mean"]
    _, _, source = gn.datasets.load_with_source("fashion-mnist", download=False)
    assert captured.err.splitlines()[0] == source
    record = json.loads((out / "speedrun.json").read_text())
    (row,) = record["rows"]
    assert row["variant"] == "gpunet" and row["seed"] == 0
    assert 0.5 < row["accuracy"] <= 1 and row["seconds"] > 0
    assert len(row["curve"]) == record["config"]["recipe"]["epochs"]
    assert row["curve"][-1][1] == row["accuracy"] and row["seconds"] >= row["curve"][-1][0]
    assert row["steps"] == 2 * -(-4000 // 128)
    assert record["environment"]["numpy"]
    rows = list(csv.DictReader(open(out / "speedrun.csv")))
    assert rows[0]["variant"] == "gpunet" and float(rows[0]["accuracy"]) == row["accuracy"]


def test_summary_counts_seeds_at_the_target():
    rows = [{"variant": "a", "accuracy": a, "seconds": s, "compile_seconds": None}
            for a, s in [(0.90, 1.0), (0.89, 3.0), (0.91, 2.0)]]
    (summary,) = speedrun_report.summarize(rows, 0.895)
    assert summary["reached"] == pytest.approx(2 / 3)
    assert summary["mean_accuracy"] == pytest.approx(0.9)
    assert summary["seconds"] == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert "67%" in speedrun_report.format_table([summary], 0.895).splitlines()[1]


def test_variants_that_cannot_run_are_refused_by_name():
    devices = {name: v[0] for name, v in speedrun.VARIANTS.items()}

    def choose(requested):
        return speedrun.choose(requested, "cpu", devices, speedrun.variant_unavailable)

    with pytest.raises(speedrun.BenchError, match="'gpunet-graph' cannot run: runs on the gpu"):
        choose(["gpunet-graph"])
    names, _ = choose(None)
    assert names[0] == "gpunet" and not any("graph" in n for n in names)


def test_bad_options_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["speedrun", "--target", "1.5"])
    assert exc.value.code == 2
    assert "expected a finite number in (0, 1], got '1.5'" in capsys.readouterr().err
