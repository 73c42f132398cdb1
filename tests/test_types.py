"""The public API's type hints hold: mypy over gpunet/ finds no error (config in
pyproject.toml), and the package says it is typed (gpunet/py.typed, in the wheel)."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_error_in_gpunet():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[dev]')")
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_package_is_marked_typed():
    assert (ROOT / "gpunet" / "py.typed").is_file()
    assert '"gpunet" = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()
