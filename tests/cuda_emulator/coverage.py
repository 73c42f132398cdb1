"""Which lines of ``kernels/*.cu`` ran under the emulator, read with gcov.

Run the tests with ``GPUNET_EMULATOR_COVERAGE=DIR``: every module is then built with
``--coverage`` into ``DIR/modules/``, and each process adds its line counts to the ``.gcda``
files there when it exits (:func:`flush` writes this process's counts now). Then
:func:`kernel_coverage` ``(DIR)`` gives, per ``kernels/*.cu``, the lines executed, the lines
executable and the lines missed, over all modules built from that file (any options, any
process). A ``.cu`` no test built is built then from its launcher's ``KernelSource``, so its
lines count as missed rather than vanish.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gpunet.ops.kernels import kernel_dir

from .build import Flavour, build


@dataclass(frozen=True)
class FileCoverage:
    """Lines of one source file: executed and executable counts, and the missed line numbers."""

    executed: int
    executable: int
    missed: tuple[int, ...]

    @property
    def percent(self) -> float:
        return 100.0 * self.executed / self.executable if self.executable else 100.0


def coverage_folder(folder: Path | str | None = None) -> Path:
    """``folder``, else ``$GPUNET_EMULATOR_COVERAGE``."""
    folder = folder or os.environ.get("GPUNET_EMULATOR_COVERAGE")
    if not folder:
        raise ValueError("no coverage folder: pass one or set GPUNET_EMULATOR_COVERAGE=DIR")
    return Path(folder).resolve()


def flush(folder: Path | str | None = None) -> None:
    """Write the counts of this process's modules built in ``folder`` to their .gcda files."""
    from . import loaded_modules

    modules = coverage_folder(folder) / "modules"
    for module in loaded_modules():
        if module.library.parent.parent == modules:
            module.flush_coverage()


def coverage_report(folder: Path | str | None = None) -> dict[Path, FileCoverage]:
    """Per source file compiled into a coverage module in ``folder`` (kernels and the
    emulator's own headers alike): its lines, over all those modules."""
    folder = coverage_folder(folder)
    flush(folder)
    executable: dict[Path, set[int]] = {}
    executed: dict[Path, set[int]] = {}
    for module in sorted((folder / "modules").glob("*/driver.gcno")):
        for entry in _gcov(module.parent)["files"]:
            path = Path(entry["file"])
            lines = executable.setdefault(path, set())
            ran = executed.setdefault(path, set())
            for line in entry["lines"]:
                lines.add(line["line_number"])
                if line["count"] > 0:
                    ran.add(line["line_number"])
    return {path: FileCoverage(len(executed[path]), len(lines),
                               tuple(sorted(lines - executed[path])))
            for path, lines in executable.items()}


def kernel_coverage(folder: Path | str | None = None) -> dict[str, FileCoverage]:
    """Per ``kernels/*.cu`` file name (e.g. ``"gemm.cu"``): its lines over every module built
    from it in ``folder``."""
    folder = coverage_folder(folder)
    sources = sorted(kernel_dir().glob("*.cu"))
    report = coverage_report(folder)
    for path in sources:
        if path.resolve() not in report:  # never built: build it, so its lines count as missed
            source = importlib.import_module(f"gpunet.ops.launchers.{path.stem}").SOURCE
            build(source.read(), source.options, source.kernels, Flavour(coverage=folder))
            report = coverage_report(folder)
    return {path.name: report[path.resolve()] for path in sources}


def _gcov(module: Path) -> dict:
    """gcov's JSON for one coverage module's folder (driver.o, .gcno, .gcda)."""
    done = subprocess.run(["gcov", "--json-format", "--stdout", "--object-directory",
                           str(module), str(module / "driver.cpp")], cwd=module,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"gcov failed on {module}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)
