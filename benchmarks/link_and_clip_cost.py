"""Cost of the parameter link and of gradient clipping on a 784-512-512-10 step at batch 128.

- link: the same training step (SGD with momentum), eager and through the static step, timed
  with this tree's gpunet and with a baseline tree from before the link (``--baseline REV``:
  ``git archive`` of that revision into a temporary folder), in worker processes that
  alternate between the two trees; the pooled medians are compared.
- clipping: in this tree's workers, the same steps with ``gn.clip_grad_norm_`` (eager) or
  ``fit``'s clipping step (static), ``max_norm`` 1e-3 so every step clips (the norm's pass
  and the scaling pass), interleaved with the plain steps in one process.
- assignment: one ``p.data = a`` / ``p.grad = a`` of the 512x784 weight (a copy into the flat
  buffer), the median of many.

    python benchmarks/link_and_clip_cost.py --baseline REV [--rounds 6] [--out LOG]

Each worker times ``--repeats`` blocks of ``--steps`` steps per variant, the variants
interleaved, after a warm-up; a sample is the mean ms per step of one block, in CPU time of
the process (``time.process_time``: what a step costs, even on a machine shared with other
jobs) and in wall time. Workers run with ``--threads`` BLAS threads (default 1, so that CPU
time counts work, not the spinning of idle BLAS threads).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_NORM = 1e-3  # below every step's gradient norm here: each step clips


def _worker(steps, repeats, variants):
    import numpy as np

    import gpunet as gn
    from gpunet.nn.boundary import inside
    from gpunet.training.engine.step_runner import StepRunner

    gn.manual_seed(0)
    rng = np.random.default_rng(0)
    batch, n = 128, 128 * steps
    X = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n)

    def model_and_optimizer():
        model = gn.Sequential(gn.Linear(784, 512), gn.ReLU(), gn.Linear(512, 512), gn.ReLU(),
                              gn.Linear(512, 10))
        return model, gn.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def eager(clip):
        model, opt = model_and_optimizer()
        loss_fn = gn.CrossEntropyLoss()
        x, t = X[:batch], y[:batch]

        def run():
            with inside():
                for _ in range(steps):
                    loss_fn(model(x), t)
                    model.backward(loss_fn.backward(), input_grad=False)
                    if clip:
                        gn.clip_grad_norm_(model.parameters(), MAX_NORM)
                    opt.step()
        return run

    def static(clip):
        model, opt = model_and_optimizer()
        extra = {}
        if clip:
            from gpunet.nn.clip_grad import NormClipper
            extra["clip"] = NormClipper(opt.flat, MAX_NORM)
        runner = StepRunner(model, opt, X, y, batch, steps, **extra)

        def run():
            runner.start_epoch()
            for step in range(runner.count):
                runner.run(step)
        return run

    makers = {"eager": lambda: eager(False), "eager+clip": lambda: eager(True),
              "static": lambda: static(False), "static+clip": lambda: static(True)}
    runs = {name: makers[name]() for name in variants}
    for run in runs.values():
        run()
        run()
    times = {f"{name} {clock}": [] for name in variants for clock in ("cpu", "wall")}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[f"{name} cpu"].append((time.process_time() - cpu) / steps * 1e3)
            times[f"{name} wall"].append((time.perf_counter() - wall) / steps * 1e3)
    if "eager" in variants and hasattr(gn.Parameter, "numel"):  # this tree: assignments
        model, _ = model_and_optimizer()
        weight, value = model[0].weight, np.ones((512, 784), np.float32)
        for what in ("data", "grad"):
            spans = []
            for _ in range(200):
                start = time.perf_counter()
                setattr(weight, what, value)
                spans.append((time.perf_counter() - start) * 1e6)
            times[f"p.{what} = a (us)"] = [statistics.median(spans)]
    print(json.dumps(times))


def _run_worker(src, args, variants):
    threads = str(args.threads)
    env = {**os.environ, "PYTHONPATH": str(src), "OPENBLAS_NUM_THREADS": threads,
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    done = subprocess.run([sys.executable, __file__, "--worker", "--steps", str(args.steps),
                           "--repeats", str(args.repeats), "--variants", ",".join(variants)],
                          env=env, capture_output=True, text=True, check=True, cwd=src)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _versions():
    import numpy as np

    lines = [f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"machine: {platform.machine()}, {os.cpu_count()} cores, "
             f"{_cpu_model()}, {platform.platform()}",
             f"python {platform.python_version()}, numpy {np.__version__}"]
    try:
        from threadpoolctl import threadpool_info
        blas = [f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)"
                for i in threadpool_info() if i.get("user_api") == "blas"]
        lines.append("blas: " + ", ".join(blas))
    except ImportError:
        pass
    lines.append(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return lines


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="git revision from before the parameter link")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per worker")
    parser.add_argument("--out", help="also write the report to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variants", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args.steps, args.repeats, args.variants.split(","))
    if not args.baseline:
        parser.error("--baseline REV is required (the revision before the parameter link)")
    lines = _versions() + [f"baseline: {args.baseline}; {args.rounds} rounds, each worker "
                           f"{args.repeats} blocks of {args.steps} steps per variant, "
                           f"{args.threads} BLAS thread(s)"]
    pooled = {}
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "gpunet",
                                  "kernels"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        trees = {"this tree": (ROOT, ["eager", "eager+clip", "static", "static+clip"]),
                 "baseline": (Path(folder), ["eager", "static"])}
        for round_ in range(args.rounds):
            for tree, (src, variants) in (trees.items() if round_ % 2 == 0
                                          else reversed(trees.items())):
                for name, samples in _run_worker(src, args, variants).items():
                    pooled.setdefault((tree, name), []).extend(samples)
    lines.append(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    median = {key: statistics.median(samples) for key, samples in pooled.items()}
    lines.append("ms per step (median of all blocks), 784-512-512-10, batch 128, SGD momentum:")
    for (tree, name), value in sorted(median.items()):
        lines.append(f"  {tree:9s} {name:21s} {value:9.4f}  ({len(pooled[(tree, name)])} "
                     f"samples, min {min(pooled[(tree, name)]):.4f})")

    def change(a, b):
        return f"{100 * (median[a] / median[b] - 1):+.2f}%"

    for clock in ("cpu", "wall"):
        for step in ("eager", "static"):
            this, base = ("this tree", f"{step} {clock}"), ("baseline", f"{step} {clock}")
            clipped = ("this tree", f"{step}+clip {clock}")
            lines.append(f"{clock} time, {step}: link cost {change(this, base)}, clipping "
                         f"cost {change(clipped, this)}")
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")


if __name__ == "__main__":
    main()
