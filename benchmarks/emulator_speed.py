"""Speed of the CUDA emulator (tests/cuda_emulator) on this machine: the compile time of each
kernels/*.cu in each build flavour (into an empty cache), then launch times in each schedule
through gpunet's own launchers, median of the repeats: softmax cross-entropy over 4096 x 10
(softmax_xent_rows + softmax_xent_finish), the tiled GEMM of a 128 x 784 -> 512 layer (the
plan for 132 SMs), Adam over the 669,706 parameters of a 784-512-512-10 MLP.

Times are CPU seconds (g++'s for a compile, this process's for a launch: the emulator runs on
one thread), so a busy shared machine changes them little; wall time is printed beside.

    python benchmarks/emulator_speed.py [--repeats 5] [--skip-compile]
"""
import argparse
import importlib
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cuda_emulator import scheduled  # noqa: E402
from cuda_emulator.build import Flavour, build  # noqa: E402
from emulator_support import device, emulated_launchers  # noqa: E402
from gpunet.ops.kernels import THREADS, blocks, kernel_dir  # noqa: E402
from gpunet.ops.launchers import gemm, optim, softmax_xent  # noqa: E402
from gpunet.ops.workspace import Workspace  # noqa: E402

SOURCES = sorted(path.stem for path in kernel_dir().glob("*.cu"))


def compile_times() -> None:
    """Seconds to build each source in each flavour, from an empty cache."""
    os.environ["GPUNET_EMULATOR_CACHE"] = tempfile.mkdtemp(prefix="emulator-bench-")
    flavours = {"plain": Flavour(), "sanitize": Flavour(sanitize=True),
                "coverage": Flavour(coverage=Path(tempfile.mkdtemp(prefix="emulator-cov-")))}
    print(f"{'compile, CPU s (wall)':22}" + "".join(f"{name:>16}" for name in flavours))
    for name in SOURCES:
        source = importlib.import_module(f"gpunet.ops.launchers.{name}").SOURCE
        row = []
        for flavour in flavours.values():
            start, wall = _children_cpu(), time.perf_counter()
            build(source.read(), source.options, source.kernels, flavour)
            row.append(f"{_children_cpu() - start:7.1f} ({time.perf_counter() - wall:5.1f})")
        print(f"{name + '.cu':22}" + "".join(f"{cell:>16}" for cell in row), flush=True)
    del os.environ["GPUNET_EMULATOR_CACHE"]


def _children_cpu() -> float:
    """CPU seconds used so far by finished child processes (g++)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def workloads():
    """(name, CUDA threads per call, call) for each timed operation."""
    rng = np.random.default_rng(0)
    logits = device(rng.standard_normal((4096, 10)).astype(np.float32))
    labels = device(rng.integers(0, 10, 4096))
    grad, error = device(np.empty_like(logits)), device(np.full(1, softmax_xent.NO_ERROR))
    workspace = Workspace(np)

    def xent():
        softmax_xent.softmax_xent(logits, labels, grad, error, workspace)

    plan = gemm.plan(128, 512, 784, 132)
    x = device(rng.standard_normal((128, 784)).astype(np.float32))
    w = device(rng.standard_normal((512, 784)).astype(np.float32))
    b, out = device(np.zeros(512, np.float32)), device(np.empty((128, 512), np.float32))

    def forward():
        gemm.run_plan(plan, x, w, out, False, True, workspace, b, True)

    n = 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    param, g, m, v = (device(rng.standard_normal(n).astype(np.float32)) for _ in range(4))
    lr, count = device(np.float32([1e-3])), device(np.float32([1]))

    def adam():
        optim.adam_update(param, g, m, v, lr, count, beta1=0.9, beta2=0.999, eps=1e-8,
                          weight_decay=0.0, decoupled=False)

    xent_threads = (blocks(4096, softmax_xent.ROWS_PER_BLOCK) * softmax_xent.ROWS_PER_BLOCK *
                    softmax_xent.WARP + 2 * softmax_xent.FINISH_THREADS)  # rows, then 2 parts
    gemm_threads = plan.blocks * plan.tiles.threads + blocks(128 * 512) * THREADS  # + reduce
    return [("softmax_xent 4096x10", xent_threads, xent),
            (f"gemm 128x784x512 ({plan.tiles.bm}x{plan.tiles.bn}, split {plan.splits})",
             gemm_threads, forward),
            (f"adam {n:,}", blocks(n // 4) * THREADS, adam)]


def launch_times(repeats: int) -> None:
    modes = ("sequential", "shuffled", "concurrent")
    title = f"launch, CPU ms (wall), median of {repeats}"
    print(f"\n{title:52}" + "".join(f"{m:>16}" for m in modes))
    with emulated_launchers():
        for name, threads, call in workloads():
            call()  # build and load the module first
            row = []
            for mode in modes:
                cpu, wall = [], []
                with scheduled(mode, seed=1):
                    for _ in range(repeats):
                        start, start_wall = time.process_time(), time.perf_counter()
                        call()
                        cpu.append(time.process_time() - start)
                        wall.append(time.perf_counter() - start_wall)
                row.append(f"{1e3 * statistics.median(cpu):7.1f} "
                           f"({1e3 * statistics.median(wall):6.1f})")
            label = f"{name} ({threads:,} threads)"
            print(f"{label:52}" + "".join(f"{cell:>16}" for cell in row), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    if not args.skip_compile:
        compile_times()
    launch_times(args.repeats)


if __name__ == "__main__":
    main()
