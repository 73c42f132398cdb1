"""Batch-size throughput sweep: ``gpunet bench`` (also ``python -m gpunet bench``).

For each batch size and each variant (``numpy``, ``numpy-static``, ``cupy-unfused``,
``cupy-fused``, ``cupy-graph``, ``torch``, ``gemm-floor``) on one device: training-step throughput (samples/s) and the time of one
reshuffled epoch over a Fashion-MNIST-shaped dataset held on the device. Warm-up steps are
not timed; each repeat is timed by CUDA events (GPU) or ``perf_counter`` (CPU); the median of
the repeats is reported with its min and max.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import report
from .. import optim
from ..backend import BackendUnavailable, get_backend, set_tf32, warmup
from ..checks import argparse_type, check_int
from .common import BenchError, choose, prepare_output_folder, torch_unavailable
from .torch_variant import TorchVariant
from .variants import GemmFloorVariant, GpunetVariant, StaticStepVariant, Workload

VARIANTS = ("numpy", "numpy-static", "cupy-unfused", "cupy-fused", "cupy-graph", "torch",
            "gemm-floor")
VARIANT_DEVICES = {"numpy": ("cpu",), "numpy-static": ("cpu",), "cupy-unfused": ("gpu",),
                   "cupy-fused": ("gpu",), "cupy-graph": ("gpu",), "torch": ("cpu", "gpu"),
                   "gemm-floor": ("cpu", "gpu")}
DEFAULT_BATCH_SIZES = tuple(2 ** k for k in range(5, 17))  # 32 .. 65536
QUICK_BATCH_SIZES = (64, 256, 1024, 4096)


@dataclass(frozen=True)
class Settings:
    """How each (variant, batch size) is timed; ``steps=None`` sizes repeats to
    ``repeat_seconds`` from one probe step."""

    batch_sizes: tuple[int, ...]
    steps: int | None
    repeats: int
    warmup: int
    epochs: int
    repeat_seconds: float


FULL = {"repeats": 5, "warmup": 10, "epochs": 3, "repeat_seconds": 0.25}
QUICK = {"repeats": 3, "warmup": 2, "epochs": 1, "repeat_seconds": 0.1}
MAX_AUTO_STEPS = 2000





def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``bench`` options on ``parser``."""
    positive = argparse_type(check_int, int, minimum=1)
    nonnegative = argparse_type(check_int, int, minimum=0)
    parser.add_argument("--batch-sizes", type=positive, nargs="+", default=None, metavar="N",
                        help="batch sizes to sweep (default: 32 64 ... 65536; "
                             f"--quick: {' '.join(map(str, QUICK_BATCH_SIZES))})")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                        metavar="NAME", help=f"variants to measure, of {', '.join(VARIANTS)} "
                                             f"(default: all available on the device)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="device to measure on (default: auto, the GPU when one answers)")
    parser.add_argument("--hidden", type=positive, nargs="+", default=[512, 512], metavar="W",
                        help="hidden layer widths (default: 512 512)")
    parser.add_argument("--optimizer", choices=sorted(optim.OPTIMIZERS), default="sgd",
                        help="SGD with momentum 0.9 (lr 0.01) or Adam (lr 1e-3); default sgd")
    parser.add_argument("--samples", type=positive, default=60_000,
                        help="dataset size for the epoch timing (default: 60000)")
    parser.add_argument("--steps", type=positive, default=None,
                        help="timed steps per repeat (default: as many as fill "
                             f"{FULL['repeat_seconds']} s, {QUICK['repeat_seconds']} s "
                             f"with --quick)")
    parser.add_argument("--repeats", type=positive, default=None,
                        help=f"timed repeats per size, median reported (default: "
                             f"{FULL['repeats']}, --quick: {QUICK['repeats']})")
    parser.add_argument("--warmup", type=nonnegative, default=None,
                        help=f"untimed warm-up steps per size (default: {FULL['warmup']}, "
                             f"--quick: {QUICK['warmup']})")
    parser.add_argument("--epochs", type=nonnegative, default=None,
                        help=f"timed epochs per size, 0 to skip (default: {FULL['epochs']}, "
                             f"--quick: {QUICK['epochs']})")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller sweep that runs in a few minutes on a 2-core CPU")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write bench.json, bench.csv, bench.md, throughput.png and "
                             "speedup.png into DIR")
    parser.add_argument("--distributed", action="store_true",
                        help="under an MPI launcher (mpiexec -n N gpunet bench --distributed "
                             "...): each rank takes batch/N rows of every step and the "
                             "gradients are averaged over the ranks; samples/s are totals; "
                             "gpunet's eager variants only, a fixed --steps (default 20), "
                             "no epochs; rank 0 reports")
    parser.add_argument("--tf32", action="store_true",
                        help="allow TF32 tensor-core GEMMs on the GPU (gpunet.set_tf32 and "
                             "PyTorch's allow_tf32; default: off, exact float32)")


def settings_from(args: argparse.Namespace) -> Settings:
    """The timing settings: explicit options, else the --quick or full defaults."""
    defaults = QUICK if args.quick else FULL

    def pick(name):
        value = getattr(args, name)
        return defaults[name] if value is None else value

    sizes = args.batch_sizes or (QUICK_BATCH_SIZES if args.quick else DEFAULT_BATCH_SIZES)
    return Settings(batch_sizes=tuple(sorted(set(sizes))), steps=args.steps,
                    repeats=pick("repeats"), warmup=pick("warmup"), epochs=pick("epochs"),
                    repeat_seconds=defaults["repeat_seconds"])


def variant_unavailable(name: str, device: str) -> str | None:
    """Why ``name`` cannot run on ``device``, or None when it can."""
    if device not in VARIANT_DEVICES[name]:
        return (f"runs on the {' or '.join(VARIANT_DEVICES[name])}, not the {device} "
                f"(use --device {VARIANT_DEVICES[name][0]})")
    if name in ("cupy-fused", "cupy-graph"):
        try:
            from ..ops import cupy_ops  # noqa: F401
        except ImportError as exc:
            return f"the fused CuPy ops do not import ({exc})"
    if name == "torch":
        return torch_unavailable(device)
    return None


def choose_variants(requested, device) -> tuple[list[str], dict[str, str]]:
    """The sweep's variants to run and why others were skipped (see ``common.choose``)."""
    return choose(requested, device, VARIANT_DEVICES, variant_unavailable)


def build_variant(name, backend, workload, tf32):
    """Construct one variant (model and dataset on the device)."""
    if name in ("numpy", "numpy-static", "cupy-unfused"):
        from ..ops.numpy_ops import NumpyOps

        variant = StaticStepVariant if name == "numpy-static" else GpunetVariant
        return variant(name, backend, NumpyOps(backend.xp), workload)
    if name in ("cupy-fused", "cupy-graph"):
        from ..ops.cupy_ops import CupyOps

        variant = StaticStepVariant if name == "cupy-graph" else GpunetVariant
        return variant(name, backend, CupyOps(), workload)
    if name == "torch":
        return TorchVariant(backend.name, workload, tf32)
    return GemmFloorVariant(backend, workload)


def spread(values) -> dict | None:
    """Median, min and max of ``values`` (None when there are none)."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _timed(variant, fn, times: int) -> float:
    clock = variant.clock()
    clock.start()
    for _ in range(times):
        fn()
    return clock.stop()


class Measurement:
    """One variant at one batch size, taken phase by phase so that the variants of a size can
    take turns (repeat 1 of each, then repeat 2 of each...): a burst of load from elsewhere
    then hits every variant alike. A failure ends the measurement and is kept in its row."""

    def __init__(self, variant, batch_size: int):
        self.variant, self.batch_size = variant, batch_size
        self.row = {"variant": variant.name, "batch_size": batch_size, "status": "ok"}
        self.step: Any = None   # the variant's step callable, once prepared
        self.epoch: Any = None
        self.steps: Any = 0
        self.loss, self.launches = None, None
        self.step_seconds: list[float] = []
        self.epoch_seconds: list[float] = []

    def attempt(self, phase) -> None:
        """Run ``phase(self)`` with the variant active, unless an earlier phase failed;
        out of memory is recorded as a result, any other failure as an error."""
        if self.row["status"] != "ok":
            return
        try:
            with self.variant.active():
                phase(self)
        except self.variant.oom_errors as exc:
            text = str(exc).strip()
            self._fail("out of memory", text.splitlines()[0] if text else type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - reported in the row and the exit status
            self._fail("error", f"{type(exc).__name__}: {exc}")

    def _fail(self, status, message):
        self.row.update(status=status, message=message)
        self.step = self.epoch = None
        self.variant.release()

    def prepare(self, settings: Settings) -> None:
        """Build the step, run the warm-up, choose the steps per repeat."""
        self.step = self.variant.step_at(self.batch_size)
        for _ in range(settings.warmup):
            self.step()
        self.steps = settings.steps
        if self.steps is None:
            probe = _timed(self.variant, self.step, 1)
            self.steps = max(1, min(MAX_AUTO_STEPS,
                                    round(settings.repeat_seconds / max(probe, 1e-9))))

    def time_steps(self) -> None:
        self.variant.settle()
        self.step_seconds.append(_timed(self.variant, self.step, self.steps) / self.steps)

    def check_loss(self) -> None:
        self.loss = self.variant.last_loss()
        if self.loss is not None and not math.isfinite(self.loss):
            raise FloatingPointError(f"the loss is {self.loss} after the timed steps")

    def prepare_epoch(self) -> None:
        self.epoch = self.variant.epoch_at(self.batch_size)

    def time_epoch(self) -> None:
        if self.epoch is not None:
            self.variant.settle()
            self.epoch_seconds.append(_timed(self.variant, self.epoch, 1))

    def count_launches(self) -> None:
        try:
            self.launches = self.variant.count_launches(self.step)
        except Exception as exc:  # noqa: BLE001 - counting is auxiliary: keep the timings
            self.row["message"] = f"launches not counted: {type(exc).__name__}: {exc}"

    def finish(self, repeats: int) -> dict:
        """The result row; the variant's cached memory is returned."""
        if self.row["status"] == "ok":
            times = spread(self.step_seconds)
            assert times is not None  # an ok row has its timed repeats
            b = self.batch_size
            self.row.update(
                steps=self.steps, repeats=repeats, step_seconds=times,
                samples_per_second={"median": b / times["median"], "min": b / times["max"],
                                    "max": b / times["min"]},
                epoch_seconds=spread(self.epoch_seconds), final_loss=self.loss,
                launches=self.launches)
        self.step = self.epoch = None
        self.variant.release()
        return self.row


def measure_size(variants, batch_size: int, settings: Settings, count_launches=False):
    """Rows for every variant at ``batch_size``: warm-up, then the timed step repeats and
    epochs taken in turns; with ``count_launches``, kernel launches per step (GPU only)."""
    runs = [Measurement(v, batch_size) for v in variants]

    def each(phase):
        for run in runs:
            run.attempt(phase)

    each(lambda run: run.prepare(settings))
    for _ in range(settings.repeats):
        each(Measurement.time_steps)
    each(Measurement.check_loss)
    if settings.epochs:
        each(Measurement.prepare_epoch)
        for _ in range(settings.epochs):
            each(Measurement.time_epoch)
    if count_launches:
        each(Measurement.count_launches)
    return [run.finish(settings.repeats) for run in runs]


def add_ratios(rows: list[dict]) -> None:
    """Per batch size: each row's throughput relative to ``torch`` (>1: faster) and its step
    time relative to the GEMM floor (>=1; 1 would be nothing but GEMMs)."""
    def median_step(name):
        for row in rows:
            if row["variant"] == name and row["status"] == "ok":
                return row["step_seconds"]["median"]
        return None

    torch_time, floor_time = median_step("torch"), median_step("gemm-floor")
    for row in rows:
        ok = row["status"] == "ok"
        row["speedup_vs_torch"] = (torch_time / row["step_seconds"]["median"]
                                   if ok and torch_time and row["variant"] != "torch" else None)
        row["time_vs_floor"] = (row["step_seconds"]["median"] / floor_time
                                if ok and floor_time and row["variant"] != "gemm-floor"
                                else None)


def sweep(variants, settings: Settings, progress=None) -> list[dict]:
    """Measure every variant at every batch size (sizes outer, the variants of a size in
    turns); kernel launches are counted at the smallest and largest size; ``progress``
    receives one line per size."""
    rows, sizes = [], settings.batch_sizes
    for k, batch_size in enumerate(sizes, 1):
        started = time.perf_counter()
        count = batch_size in (sizes[0], sizes[-1])
        size_rows = measure_size(variants, batch_size, settings, count)
        add_ratios(size_rows)
        rows.extend(size_rows)
        if progress:
            progress(report.progress_line(k, len(settings.batch_sizes), batch_size, size_rows,
                                          time.perf_counter() - started))
    return rows


def run(args: argparse.Namespace) -> int:
    """Run the sweep described by ``args``; 0 when every measurement ran (out of memory
    counts as a result), 1 when one failed, 2 when the request cannot be carried out.
    Distributed, rank 0 alone prints and writes."""
    comm = None

    def say(line):
        if comm is None or comm.rank == 0:
            print(line, file=sys.stderr, flush=True)

    settings = settings_from(args)
    workload = Workload(hidden=tuple(args.hidden), optimizer=args.optimizer,
                        samples=args.samples)
    try:
        if args.distributed:
            from .data_parallel import DISTRIBUTABLE, distributed_settings, join

            comm = join(args)  # first: from here on rank 0 alone speaks
            settings = distributed_settings(comm, args, settings)
        backend = get_backend(args.device if comm is None else comm.backend)
        device = backend.name
        names, skipped = choose_variants(args.variants, device)
        if comm is not None:
            names = [n for n in names if n in DISTRIBUTABLE]
        if args.out and (comm is None or comm.rank == 0):
            prepare_output_folder(args.out)
    except (BenchError, BackendUnavailable) as exc:
        say(f"gpunet bench: error: {exc}")
        return 2
    for name, reason in skipped.items():
        say(f"skipping {name}: {reason}")
    if device == "gpu":
        set_tf32(args.tf32)  # cuBLAS GEMMs of the CuPy variants; torch's in TorchVariant
        if {"cupy-fused", "cupy-graph"} & set(names):
            warmup()  # compile every kernel before anything is timed
    environment = report.environment(backend, tf32=args.tf32)
    say(f"gpunet bench on {environment['device_name']} ({device}): "
        f"{', '.join(names)}; batch sizes {' '.join(map(str, settings.batch_sizes))}")
    variants = [build_variant(name, backend, workload, args.tf32) for name in names]
    if comm is not None:
        for variant in variants:
            variant.distribute(comm)
        say(f"distributed over {comm.size} ranks: each takes batch/{comm.size} rows of a "
            f"step; samples/s below are totals over the ranks")
    rows = sweep(variants, settings, progress=say)
    if comm is not None and comm.rank != 0:
        return 1 if any(row["status"] == "error" for row in rows) else 0
    config = report.config_of(args, settings, workload, device, names)
    config["ranks"] = 1 if comm is None else comm.size
    record = report.make_record(
        config=config, environment=environment,
        variants={v.name: v.details() for v in variants}, skipped=skipped, rows=rows)
    print(report.format_table(record))
    print(report.format_targets(record))
    if args.out:
        if report.pyplot() is None:
            say("matplotlib is not installed: skipping throughput.png and speedup.png "
                "(pip install 'gpunet[bench]')")
        for path in report.write_outputs(record, args.out):
            say(f"wrote {path}")
    return 1 if any(row["status"] == "error" for row in rows) else 0
