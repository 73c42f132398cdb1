"""Line coverage of kernels/*.cu under the emulator (gcov): lines that ran are counted once
run, in this process (after a flush) and in others (at their exit); a branch not taken is
missed; a kernel file no test built is reported whole, as missed."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cuda_emulator import Flavour
from cuda_emulator.coverage import coverage_report, kernel_coverage
from emulator_support import KERNELS, device, emulated_launchers, require_compiler
from gpunet.ops.launchers import softmax_xent
from gpunet.ops.workspace import Workspace

require_compiler()
if shutil.which("gcov") is None:
    pytest.skip("gcov is not installed (it comes with g++)", allow_module_level=True)

TESTS = Path(__file__).resolve().parent
SOURCE = softmax_xent.SOURCE.read().splitlines()


def line_of(text: str) -> int:
    """The 1-based line of softmax_xent.cu holding ``text`` (once)."""
    found = [i + 1 for i, line in enumerate(SOURCE) if text in line]
    assert len(found) == 1, (text, found)
    return found[0]


def loss(labels, folder):
    logits = np.random.default_rng(0).standard_normal((len(labels), 5)).astype(np.float32)
    with emulated_launchers(flavour=Flavour(coverage=folder)):
        softmax_xent.softmax_xent(device(logits), device(labels), device(np.empty_like(logits)),
                                  device(np.full(1, softmax_xent.NO_ERROR)), Workspace(np))


def test_executed_and_missed_lines_of_a_kernel(tmp_path):
    loss(np.array([0, 1, 2, 3] * 10), tmp_path)
    report = kernel_coverage(tmp_path)
    assert set(report) == {p.name for p in (TESTS.parent / "kernels").glob("*.cu")}
    xent = report["softmax_xent.cu"]
    bad_label = line_of("atomicMin(err, word);")
    assert bad_label in xent.missed and line_of("lse_merge(m, s, m2, s2);") not in xent.missed
    assert line_of("hits[model] = hs[0];") not in xent.missed  # the last block's sum ran
    assert 0 < xent.executed < xent.executable == xent.executed + len(xent.missed)
    untouched = report["optim.cu"]  # no test in this process built it: all missed
    assert untouched.executed == 0 and untouched.executable > 50

    loss(np.array([0, 1, 7, 3] * 10), tmp_path)  # a bad label: its lines run now
    again = kernel_coverage(tmp_path)["softmax_xent.cu"]
    assert bad_label not in again.missed and again.executed > xent.executed
    assert again.executable == xent.executable


SCRIPT = """
import numpy as np
from emulator_support import load_test_kernels
module = load_test_kernels("features.cu", "math_functions")
x, y = np.ones(4, np.float32), np.ones(4)
module.launch("math_functions", 1, 8, (x, np.zeros(32, np.float32), y, np.zeros(8), np.int32(4)))
"""


def test_another_process_adds_its_counts_at_exit(tmp_path):
    env = {**__import__("os").environ, "GPUNET_EMULATOR_COVERAGE": str(tmp_path)}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=TESTS, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    report = coverage_report(tmp_path)[KERNELS / "features.cu"]
    text = (KERNELS / "features.cu").read_text().splitlines()
    early_return = next(i + 1 for i, line in enumerate(text) if "if (i >= n) return;" in line)
    assert early_return not in report.missed
    assert next(i + 1 for i, line in enumerate(text) if "atomicAdd(&i32[0], 1);" in line) \
        in report.missed  # another kernel of the file, not launched
