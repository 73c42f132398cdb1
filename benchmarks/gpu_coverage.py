"""How much of the GPU path the GPU tests execute on the CuPy stand-in.

    python benchmarks/gpu_coverage.py [--all] [--fail-under PCT] [extra pytest arguments]

Runs the GPU tests on the stand-in (``python -m pytest -m gpu`` with
``GPUNET_TEST_CUDA=stand-in-subset``: the default subset, whose left-out cases are larger
sizes of the same paths; ``--all``: every GPU test, several times slower with gcov's
unoptimised kernels) under coverage.py, the MPI ranks of the data-parallel test included,
with the CPU emulator's kernels built for gcov. It prints, per file, the lines executed and
the lines missed, of

- ``kernels/*.cu``, run by the emulator (``tests/cuda_emulator/coverage.py``), and
- the GPU-only Python: ``gpunet/ops/cupy_ops.py``, ``ops/kernels.py``, ``ops/launchers/``,
  ``training/engine/capture.py``, ``training/engine/step_runner.py`` and the NCCL engine
  (``NcclEngine`` in ``distributed/engines.py``).

The last line reads ``kernels NN.N% of lines, GPU-only Python NN.N% of lines``. Exit status:
pytest's (the numbers are printed either way); with ``--fail-under PCT`` (CI: 95), 1 as well
where either share is below PCT or the kernels' counts are missing.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_ONLY = ("gpunet/ops/cupy_ops.py", "gpunet/ops/kernels.py", "gpunet/ops/launchers/*.py",
            "gpunet/training/engine/capture.py", "gpunet/training/engine/step_runner.py")
NCCL_ENGINE = ("gpunet/distributed/engines.py", "NcclEngine")


def python_files() -> dict[Path, range | None]:
    """Each GPU-only file, with the line range counted (None: the whole file)."""
    files: dict[Path, range | None] = {}
    for pattern in GPU_ONLY:
        for path in sorted(ROOT.glob(pattern)):
            if path.name != "__init__.py":
                files[path] = None
    path, name = ROOT / NCCL_ENGINE[0], NCCL_ENGINE[1]
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            files[path] = range(node.lineno, node.end_lineno + 1)
    return files


def run_tests(folder: Path, pytest_args: list[str]) -> int:
    """The GPU tests on the stand-in under coverage.py; kernel counts into ``folder``."""
    rc = folder / "coveragerc"
    rc.write_text(f"[run]\nparallel = True\ndata_file = {folder / 'python.coverage'}\n"
                  f"source = {ROOT / 'gpunet'}\n")
    every = "--all" in pytest_args
    env = dict(os.environ, GPUNET_TEST_CUDA="stand-in" if every else "stand-in-subset",
               COVERAGE_PROCESS_START=str(rc), GPUNET_EMULATOR_COVERAGE=str(folder / "kernels"))
    pytest_args = [a for a in pytest_args if a != "--all"]
    done = subprocess.run([sys.executable, "-m", "coverage", "run", f"--rcfile={rc}", "-m",
                           "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", *pytest_args],
                          cwd=ROOT, env=env)
    subprocess.run([sys.executable, "-m", "coverage", "combine", f"--rcfile={rc}", "-q"],
                   cwd=ROOT, env=env, check=True)
    return done.returncode


def python_coverage(folder: Path) -> tuple[int, int, list[str]]:
    """(executed, executable, report lines) over :func:`python_files`."""
    import coverage

    data = coverage.Coverage(config_file=str(folder / "coveragerc"))
    data.load()
    executed = executable = 0
    lines = []
    for path, span in python_files().items():
        _, statements, _, missing, _ = data.analysis2(str(path))
        if span is not None:
            statements = [n for n in statements if n in span]
            missing = [n for n in missing if n in span]
        executed += len(statements) - len(missing)
        executable += len(statements)
        where = f"{path.relative_to(ROOT)}" + (f" ({NCCL_ENGINE[1]})" if span else "")
        lines.append(f"{where:48} {len(statements) - len(missing):4}/{len(statements):<4} "
                     f"missed {_ranges(missing) or '-'}")
    return executed, executable, lines


def kernel_coverage(folder: Path):
    """(executed, executable, report lines) of ``kernels/*.cu``, or None where the
    emulator reads no gcov counts."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from cuda_emulator.coverage import kernel_coverage as read
    except ImportError:
        return None
    report = read(folder / "kernels")
    executed = sum(c.executed for c in report.values())
    executable = sum(c.executable for c in report.values())
    lines = [f"kernels/{name:40} {c.executed:4}/{c.executable:<4} missed "
             f"{_ranges(c.missed) or '-'}" for name, c in sorted(report.items())]
    return executed, executable, lines


def _ranges(numbers) -> str:
    """``[1, 2, 3, 7]`` as ``"1-3, 7"``."""
    out, numbers = [], sorted(numbers)
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in out)


def _percent(executed: int, executable: int) -> float:
    return 100.0 * executed / executable if executable else 100.0


def _fail_under(argv: list[str]) -> tuple[float | None, list[str]]:
    """(PCT of ``--fail-under PCT``, or None; the other arguments)."""
    if "--fail-under" not in argv:
        return None, argv
    at = argv.index("--fail-under")
    try:
        return float(argv[at + 1]), argv[:at] + argv[at + 2:]
    except (IndexError, ValueError):
        sys.exit(f"--fail-under: expected a percentage such as 95, got "
                 f"{argv[at + 1] if at + 1 < len(argv) else 'nothing'}")


def main(argv: list[str]) -> int:
    floor, argv = _fail_under(argv)
    with tempfile.TemporaryDirectory(prefix="gpunet-gpu-coverage-") as tmp:
        folder = Path(tmp)
        status = run_tests(folder, argv)
        kernels = kernel_coverage(folder)
        python = python_coverage(folder)
    for _, _, lines in filter(None, (kernels, python)):
        print("\n".join(lines))
    kernel_part = ("kernels pending (the emulator reads no gcov counts here)" if kernels is None
                   else f"kernels {_percent(*kernels[:2]):.1f}% of lines")
    print(f"{kernel_part}, GPU-only Python {_percent(*python[:2]):.1f}% of lines")
    if floor is not None:
        shares = [_percent(*python[:2])] + ([] if kernels is None else [_percent(*kernels[:2])])
        if kernels is None or min(shares) < floor:
            print(f"gpu_coverage: below --fail-under {floor:g}% (or kernels not counted)",
                  file=sys.stderr)
            return status or 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
