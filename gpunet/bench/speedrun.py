"""``gpunet speedrun``: time to a target test accuracy on Fashion-MNIST, gpunet against PyTorch.

Every variant trains the same fixed recipe (``recipe.py``: model, optimizer, per-epoch
schedule, epochs; no peeking at the test set) over several seeds, in one run on one device.
A run's time is the wall time from "the data is on the device" to "the final test accuracy is
known" (device synchronised). gpunet's includes everything (its graph capture happens in the
first steps); PyTorch's leaves out its warm-up steps, capture or compilation, reported apart
(``warmup_seconds``, ``compile_seconds``). The test accuracy is also taken after every epoch for the curve,
with the clock stopped while it is (only the final evaluation counts). Reported per variant:
mean accuracy, the share of seeds that reach the target, time median/min/max, and PyTorch's
compile time separately.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from . import report, speedrun_report
from .recipe import QUICK, RECIPE
from .speedrun_torch import run_torch
from .common import BenchError, choose, prepare_output_folder, torch_unavailable
from ..backend import BackendUnavailable, get_backend, warmup
from ..checks import argparse_type, check_int, check_number
from ..data import datasets
from ..nn.losses import CrossEntropyLoss
from ..training.loop.evaluation import evaluate
from ..training.loop.fit import fit

VARIANTS = {  # name -> (devices it runs on, (library, how))
    "gpunet-graph": (("gpu",), ("gpunet", "on")),
    "gpunet-eager": (("gpu",), ("gpunet", "off")),
    "gpunet": (("cpu",), ("gpunet", "auto")),
    "torch-eager": (("gpu",), ("torch", "eager")),
    "torch-cuda-graph": (("gpu",), ("torch", "cuda-graph")),
    "torch-compile": (("gpu",), ("torch", "compile")),
    "torch": (("cpu",), ("torch", "eager")),
}
EVAL_BATCH = 10_000
TARGET = 0.895


class PausableClock:
    """Wall time with the device synchronised at each reading, minus paused stretches."""

    def __init__(self, backend):
        self.backend = backend
        self.paused = self.last_pause = 0.0
        self._start = self._pause = 0.0

    def _now(self) -> float:
        if self.backend.name == "gpu":
            self.backend.xp.cuda.get_current_stream().synchronize()
        return time.perf_counter()

    def start(self) -> None:
        self._start = self._now()

    def pause(self) -> float:
        """Stop counting; returns the time counted so far."""
        self._pause = self._now()
        return self._pause - self._start - self.paused

    def resume(self) -> None:
        self.last_pause = self._now() - self._pause
        self.paused += self.last_pause


def run_gpunet(recipe, data, seed, device, graph) -> dict:
    """One seed of the recipe with gpunet (``graph``: ``fit``'s argument). The result has
    the keys of :func:`~gpunet.bench.speedrun_torch.run_torch`'s."""
    backend = get_backend(device)
    X, y, X_test, y_test = (backend.asarray(data[key]) for key in
                            ("X_train", "y_train", "X_test", "y_test"))
    model = recipe.model(seed, backend)
    optimizer = recipe.make_optimizer(model)
    clock, curve = PausableClock(backend), []

    def at_epoch_end(record):
        counted = clock.pause()
        curve.append((counted, evaluate(model, X_test, y_test, batch_size=EVAL_BATCH).accuracy))
        clock.resume()

    clock.start()
    fit(model, CrossEntropyLoss(), optimizer, (X, y), epochs=recipe.epochs,
        batch_size=recipe.batch_size, schedule=recipe.schedule, seed=seed, progress=False,
        verbose=False, graph=graph, on_epoch_end=at_epoch_end)
    return {"accuracy": curve[-1][1], "seconds": curve[-1][0] + clock.last_pause,
            "warmup_seconds": None, "compile_seconds": None, "curve": curve,
            "steps": optimizer.step_count}


def run_variant(name, recipe, data, seed, device) -> dict:
    """One seed of one variant: its result with the variant's name and the seed."""
    library, how = VARIANTS[name][1]
    if library == "gpunet":
        result = run_gpunet(recipe, data, seed, device, how)
    else:
        result = run_torch(recipe, data, seed, "cuda" if device == "gpu" else "cpu", how)
    return {"variant": name, "seed": seed, **result}


def variant_unavailable(name, device) -> str | None:
    """Why ``name`` cannot run on ``device``, or None."""
    devices, (library, _) = VARIANTS[name]
    if device not in devices:
        return f"runs on the {devices[0]}, not the {device}"
    return torch_unavailable(device) if library == "torch" else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``speedrun`` options on ``parser``."""
    parser.add_argument("--seeds", type=argparse_type(check_int, int, minimum=1), default=None,
                        help="seeds per variant (default: 5, --quick: 2)")
    parser.add_argument("--target", type=argparse_type(check_number, low=0, high=1,
                                                       low_open=True),
                        default=TARGET, help=f"target test accuracy (default: {TARGET})")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=None,
                        metavar="NAME", help=f"of {', '.join(VARIANTS)} (default: all that "
                                             f"run on the device)")
    parser.add_argument("--quick", action="store_true",
                        help="a seconds-long version (4,000 training images, 2 epochs) for CI")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="write speedrun.json, speedrun.csv and speedrun.png there")


def load_data(recipe, data_dir, download) -> tuple[dict, str]:
    """Fashion-MNIST as the recipe uses it (uint8 rows of 784 pixels, int64 labels), and the
    line naming the folder it was read from."""
    (X, y), (X_test, y_test), source = datasets.load_with_source(
        "fashion-mnist", root=data_dir, download=download)
    return recipe.select({"X_train": X.reshape(len(X), -1), "y_train": y,
                          "X_test": X_test.reshape(len(X_test), -1), "y_test": y_test}), source


def _warm_up(names, data, device, say) -> None:
    """One untimed one-epoch run of each variant on a slice (context, libraries, kernels)."""
    small = dataclasses.replace(QUICK, epochs=1)
    sliced = small.select(data)
    for name in names:
        say(f"warm-up: {name}")
        run_variant(name, small, sliced, 0, device)


def run(args: argparse.Namespace) -> int:
    """Run the speedrun described by ``args``: 0 when every run finished, 1 when one
    failed, 2 when the request cannot be carried out."""
    def say(line):
        print(line, file=sys.stderr, flush=True)

    recipe = QUICK if args.quick else RECIPE
    seeds = args.seeds or (2 if args.quick else 5)
    try:
        backend = get_backend(args.device)
        names, skipped = choose(args.variants, backend.name,
                                {name: v[0] for name, v in VARIANTS.items()},
                                variant_unavailable)
        if args.out:
            prepare_output_folder(args.out)
        data, source = load_data(recipe, args.data_dir, not args.no_download)
    except (BenchError, BackendUnavailable, datasets.DatasetError) as exc:
        say(f"gpunet speedrun: error: {exc}")
        return 2
    say(source)
    for name, reason in skipped.items():
        say(f"skipping {name}: {reason}")
    device = backend.name
    if device == "gpu":
        warmup()
    _warm_up(names, data, device, say)
    rows, failed = [], 0
    for seed in range(seeds):
        for name in names:  # variants take turns, so a burst of load hits them alike
            try:
                row = run_variant(name, recipe, data, seed, device)
            except Exception as exc:  # noqa: BLE001 - reported, and in the exit status
                failed += 1
                say(f"{name} seed {seed}: error: {type(exc).__name__}: {exc}")
                continue
            rows.append(row)
            say(f"{name} seed {seed}: test accuracy {row['accuracy']:.2%} in "
                f"{row['seconds']:.3f} s")
    summary = speedrun_report.summarize(rows, args.target)
    print(speedrun_report.format_table(summary, args.target))
    record = {"config": {"recipe": dataclasses.asdict(recipe), "quick": bool(args.quick),
                         "seeds": seeds, "target": args.target, "device": device,
                         "variants": names},
              "environment": report.environment(backend, tf32=False),
              "rows": rows, "summary": summary}
    if args.out:
        for path in speedrun_report.write_outputs(record, args.out):
            say(f"wrote {path}")
    return 1 if failed else 0
