"""README.md's examples cannot rot: every fenced ``python`` block runs, in order, in one
namespace (as a reader pasting them would), in a temporary folder; tracebacks name README.md
lines. A block is skipped only under a visible marker on the line right above its fence:

    <!-- skip: REASON -->             always, with REASON as the skip reason
    <!-- needs: fashion-mnist -->     where Fashion-MNIST is not on disk (the test never
                                      downloads it)
    <!-- needs: gpu -->               where no GPU answers
    <!-- needs: sklearn -->           where scikit-learn (the sklearn extra) is not installed

Every ``gpunet demo ...`` command in its bash blocks must parse, and every image it shows
must exist.
"""
import importlib.util
import os
import re
import shlex
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

import gpunet as gn
from gpunet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*(skip|needs):\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    line: int      # of the first line of code (1-based)
    lang: str
    code: str
    marker: tuple  # (kind, value) of the marker right above the fence, or None


def _blocks(text):
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        above = MARKER.match(lines[i - 1]) if i else None
        found.append(Block(i + 2, opening.group(1), "\n".join(lines[i + 1:end]),
                           above.groups() if above else None))
        i = end + 1
    return found


BLOCKS = _blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.lang == "python"]


@lru_cache(maxsize=None)
def _missing(need):
    """Why the requirement ``need`` of a marker is not met here (None when it is)."""
    if need == "fashion-mnist":
        try:
            gn.datasets.fashion_mnist(download=False)
        except gn.datasets.DatasetError as exc:
            return (f"Fashion-MNIST not on disk (a source checkout ships it in "
                    f"data/fashion-mnist): {exc}")
        return None
    if need == "gpu":
        ok, reason = gn.gpu_status()
        return None if ok else f"needs a GPU: {reason}"
    if need == "sklearn":
        return None if importlib.util.find_spec("sklearn") else (
            "needs scikit-learn, the sklearn extra: pip install -e \".[sklearn]\"")
    raise AssertionError(f"unknown marker <!-- needs: {need} -->; expected fashion-mnist, "
                         f"gpu or sklearn")


def _skip_reason(block):
    if block.marker is None:
        return None
    kind, value = block.marker
    if kind == "skip":
        assert value, f"README.md:{block.line}: <!-- skip: --> needs a reason"
        return f"README.md:{block.line}: {value}"
    return _missing(value)


class Session:
    """Runs the python blocks in order into one namespace, each at most once."""

    def __init__(self):
        self.namespace = {"__name__": "__readme__"}
        self.outcomes = {}  # index -> None (ran) | "skipped" | the exception raised

    def run_through(self, index):
        for i in range(len(self.outcomes), index + 1):
            block = PYTHON[i]
            if _skip_reason(block) is not None:
                self.outcomes[i] = "skipped"
                continue
            # leading newlines: the compiled code's line numbers are README.md's
            code = compile("\n" * (block.line - 1) + block.code, str(README), "exec")
            try:
                exec(code, self.namespace)
                self.outcomes[i] = None
            except Exception as exc:  # noqa: BLE001 - reported by the block's own test
                self.outcomes[i] = exc
        return self.outcomes[index]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A session whose blocks run in a temporary folder (they write files)."""
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("readme"))
    try:
        yield Session()
    finally:
        os.chdir(cwd)


def test_the_readme_has_python_examples():
    assert len(PYTHON) >= 3


SKLEARN_IMPORT = re.compile(r"^\s*(from|import)\s+(sklearn|gpunet\.sklearn)\b", re.MULTILINE)


def test_blocks_importing_scikit_learn_are_marked():
    """Checked here even where scikit-learn is installed: a fresh venv with only the dev extra
    runs these blocks too, and an unmarked one fails there."""
    unmarked = [b.line for b in PYTHON
                if SKLEARN_IMPORT.search(b.code) and b.marker != ("needs", "sklearn")
                and (b.marker is None or b.marker[0] != "skip")]
    assert not unmarked, (f"README.md python blocks at lines {unmarked} import scikit-learn "
                          f"without <!-- needs: sklearn --> right above their fence")


@pytest.mark.parametrize("index", range(len(PYTHON)),
                         ids=[f"README.md:{b.line}" for b in PYTHON])
def test_python_block_runs(index, session):
    block = PYTHON[index]
    reason = _skip_reason(block)
    if reason is not None:
        pytest.skip(reason)
    outcome = session.run_through(index)
    if outcome is not None:
        earlier = [PYTHON[i].line for i, o in session.outcomes.items()
                   if i < index and isinstance(o, Exception)]
        note = f" (the blocks at README.md:{earlier} failed first)" if earlier else ""
        raise AssertionError(f"README.md:{block.line}: {outcome!r}{note}") from outcome


def test_every_marker_stands_right_above_a_python_block():
    lines = README.read_text(encoding="utf-8").splitlines()
    marked = {b.line - 3 for b in PYTHON if b.marker}  # 0-based index of each marker
    stray = [i + 1 for i, line in enumerate(lines)
             if line.lstrip().startswith(("<!-- skip", "<!-- needs")) and i not in marked]
    assert not stray, f"markers on README.md lines {stray} do not stand above a python block"


def _demo_commands():
    for block in BLOCKS:
        if block.lang in ("bash", "sh", ""):
            for offset, line in enumerate(block.code.splitlines()):
                if line.strip().startswith("gpunet demo"):
                    yield block.line + offset, shlex.split(line, comments=True)


DEMO_COMMANDS = list(_demo_commands())


def test_the_readme_shows_demo_commands():
    assert len(DEMO_COMMANDS) >= 6


@pytest.mark.parametrize("line,argv", DEMO_COMMANDS,
                         ids=[f"README.md:{n}" for n, _ in DEMO_COMMANDS])
def test_demo_command_parses(line, argv):
    try:
        build_parser(argv[1:]).parse_args(argv[1:])
    except SystemExit as exc:
        raise AssertionError(f"README.md:{line}: {' '.join(argv)} is not a valid command") \
            from exc


def test_every_image_the_readme_shows_exists():
    text = README.read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
    missing = [path for path in images if not (ROOT / path).is_file()]
    assert not missing, f"README.md shows images that do not exist: {missing}"
