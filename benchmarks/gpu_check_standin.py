"""Each stage of ``benchmarks/gpu_check.sh`` run on the CuPy stand-in, timed: the CPU's
rehearsal of the device check (the measurement behind ``benchmarks/results/STAGES.md``).

    python benchmarks/gpu_check_standin.py [--limit SECONDS] [--out DIR]

Runs each stage's own command, as ``gpu_check.sh`` gives it, in a process whose ``cupy`` is
the stand-in (``tests/standin.py``: NumPy arrays, the real ``kernels/*.cu`` in the CPU
emulator), each under ``--limit`` seconds (default 300); a stage that runs past it is
stopped and reported as such. The kernel, graph and sweep stages time batches up to 65,536
rows, which the emulator (a fiber per CUDA thread) takes hours over: here they run their
whole code at small batches (``--rehearsal``; the sweep at batch 32 and 256, 3 steps a
timing), and their timings, read off the stand-in's fake clock, mean nothing.
compute-sanitizer's stages have no stand-in here (the emulator's AddressSanitizer build is
``tests/test_emulator_sanitizer.py``). Prints one line per stage: name, exit status,
seconds, the last line it printed; each stage's whole output is ``NAME.log`` in ``--out``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP = ("import sys; sys.path[:0] = [{tests!r}, {root!r}]; import standin; "
         "standin.activate_for_process(); ").format(tests=str(ROOT / "tests"), root=str(ROOT))
# run ``argv`` (a script and its arguments, or ``-m module ...``) as ``python`` would
RUN = ("import runpy; argv = {argv!r}; sys.argv = argv[1:] if argv[0] == '-m' else argv; "
       "runpy.run_module(argv[1], run_name='__main__', alter_sys=True) if argv[0] == '-m' "
       "else runpy.run_path(argv[0], run_name='__main__')")
WARM = ("import time, gpunet; start = time.perf_counter(); gpunet.warmup(); "
        "print(f'every kernel module compiled or loaded from the cache in "
        "{time.perf_counter() - start:.1f} s')")
CHECK = ROOT / "benchmarks" / "gpu_check.sh"


def check_array(name: str) -> list[str]:
    """The words of gpu_check.sh's first ``NAME=(...)``: its own test and sweep arguments."""
    text = CHECK.read_text()
    start = text.index(f"\n{name}=(") + len(name) + 3
    return shlex.split(text[start:text.index(")", start)], comments=True)


TESTS = [*check_array("TESTS"), "-p", "no:cacheprovider", "-q"]
SWEEP = check_array("SWEEP")
# what the emulator (a fiber per CUDA thread) runs in minutes: small batches
# (the stand-in's fake clock would otherwise ask for thousands of steps to fill a timing)
SMALL_SWEEP = ["--batch-sizes", "32", "256", "--samples", "1024", "--steps", "3",
               "--repeats", "2", "--warmup", "1"]


def standin(code: str) -> list[str]:
    """A command running Python ``code`` with the stand-in as its ``cupy``."""
    return [sys.executable, "-c", SETUP + code]


def script(*argv: str) -> list[str]:
    """A command running ``argv`` (a script and its arguments, or ``-m module ...``) with
    the stand-in installed."""
    return standin(RUN.format(argv=list(argv)))


def stages(out: Path) -> list[tuple[str, list[str], dict]]:
    """(name, command, extra environment) of each stage that has a stand-in."""
    return [
        ("probe", script("benchmarks/gpu_summary.py", "probe", str(out / "device.json")), {}),
        ("warm", standin(WARM), {}),
        ("tests", [sys.executable, "-m", "pytest", *TESTS], {"GPUNET_TEST_CUDA": "stand-in"}),
        ("kernels", script("benchmarks/gpu_check.py", "--rehearsal", "--out",
                           str(out / "kernels.json")), {}),
        ("graph", script("benchmarks/graph_probe.py", "--rehearsal", "--out",
                         str(out / "graph.json")), {}),
        ("sweep", script("-m", "gpunet", "bench", *SWEEP, *SMALL_SWEEP, "--out",
                         str(out / "sweep")), {}),
    ]


def run(command: list[str], env: dict, limit: float, log: Path) -> tuple[str, float, str]:
    """(exit status or "stopped at ...", seconds, last line printed) of one stage, whose
    output goes to ``log``."""
    start = time.perf_counter()
    with log.open("w+") as output:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                                   stdout=output, stderr=subprocess.STDOUT, text=True)
        try:
            status = str(process.wait(timeout=limit))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            status = f"stopped at {limit:g} s"
        output.seek(0)
        lines = [line.rstrip() for line in output if line.strip()]
    return status, time.perf_counter() - start, lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=300.0,
                        help="seconds each stage may run before it is stopped (default 300)")
    parser.add_argument("--out", type=Path, help="where the stages write, each stage's output "
                                                 "in NAME.log (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gpunet-standin-stages-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        # the emulator's module cache starts empty, as a fresh device's kernel cache does
        cache = {"GPUNET_EMULATOR_CACHE": str(Path(tmp) / "emulator-cache")}
        failed = False
        for name, command, env in stages(out):
            status, seconds, last = run(command, {**env, **cache}, args.limit,
                                        out / f"{name}.log")
            failed |= status != "0"
            print(f"{name:8} exit {status:16} {seconds:7.1f} s   {last[:160]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
