"""``.ci/run`` keeps running what the README tells a new user to run: its first stage is a plain
``python3 -m venv``, then the README's two commands as written there (read from README.md, so
a changed README changes CI), ``gpunet train`` shortened only by options a user could pass;
then the stage that installs the extras and runs the suite again. Read from its dry run
(``CI_DRY_RUN=1`` prints each command instead of running it).
"""
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gpunet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SHORTENING = {"--epochs"}  # what CI may add to `gpunet train`: fewer epochs, nothing else

_spec = importlib.util.spec_from_file_location("readme_commands",
                                               ROOT / ".ci" / "readme_commands.py")
readme_commands = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_commands)


def _ci(root, dry=True):
    """Run ``root/.ci/run``; with ``dry``, return its commands per stage."""
    env = dict(os.environ, CI_DRY_RUN="1" if dry else "")
    done = subprocess.run(["bash", str(root / ".ci" / "run")], capture_output=True, text=True,
                          env=env, timeout=120)
    if not dry:
        return done
    assert done.returncode == 0, done.stderr
    stages = {}
    for line in done.stdout.splitlines():
        if re.fullmatch(r"== stage [\w-]+", line):
            stages[line.split()[-1]] = commands = []
        elif line.startswith("+ "):
            commands.append(line[2:])
    return stages


def _copy(tmp_path, readme):
    """The CI scripts beside ``readme`` in a folder of their own."""
    shutil.copytree(ROOT / ".ci", tmp_path / ".ci")
    (tmp_path / "README.md").write_text(readme, encoding="utf-8")
    return tmp_path


def _added_train_options(ran, setup):
    """The words ``ran`` inserts right after ``setup``'s ``gpunet train`` (asserting that is
    its only difference from ``setup``)."""
    words, ran_words = shlex.split(setup), shlex.split(ran)
    at = next(i for i in range(len(words) - 1) if words[i:i + 2] == ["gpunet", "train"]) + 2
    added = ran_words[at:len(ran_words) - len(words) + at]
    assert ran_words == words[:at] + added + words[at:], (ran, setup)
    return added


def _first_stage_runs(stage, setup, test):
    """``stage`` is a fresh venv, then ``setup`` (gpunet train shortened) and ``test``."""
    venv = re.fullmatch(r"python3 -m venv (\S+)", stage[0])
    assert venv, f"the first stage starts with {stage[0]!r}, not a plain python3 -m venv"
    assert stage[1] == f". {venv.group(1)}/bin/activate"
    ran = re.fullmatch(r"\{ (.*); \} 2>&1 \| tee \S+", stage[2])
    assert ran, stage[2]
    added = _added_train_options(ran.group(1), setup)
    options = {word for word in added if word.startswith("-")}
    assert options <= SHORTENING, f"CI changes gpunet train with {added}"
    build_parser(["train", *added]).parse_args(["train", *added])  # a user could type them
    assert stage[-1] == test
    return added


def test_the_readme_shows_the_two_commands():
    setup, test = readme_commands.two_commands(README)
    assert setup.startswith('pip install -e ".[dev') and setup.endswith("gpunet train")
    assert test == "python -m pytest -q"


def test_the_first_stage_is_the_readme_as_written():
    stages = _ci(ROOT)
    assert list(stages)[:2] == ["readme", "extras"]
    added = _first_stage_runs(stages["readme"], *readme_commands.two_commands(README))
    assert added == ["--epochs", "2"]
    data = f"data: Fashion-MNIST from {ROOT.resolve()}/data/fashion-mnist"
    assert any(data in command for command in stages["readme"])  # the shipped copy was read


def test_the_first_stage_follows_a_changed_readme(tmp_path):
    block = re.search(r"## Two commands\n\n```bash\n(.*?)```", README, re.S).group(1)
    changed = README.replace(block, 'pip install -e ".[dev,plot]" && gpunet train --seed 3  '
                                    '# set-up\npython -m pytest -q -x tests/test_idx.py  # tests\n')
    stages = _ci(_copy(tmp_path, changed))
    _first_stage_runs(stages["readme"], 'pip install -e ".[dev,plot]" && gpunet train --seed 3',
                      "python -m pytest -q -x tests/test_idx.py")


def test_ci_installs_no_dataset_and_then_runs_the_suite_with_the_extras():
    text = (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in text and "dataset-fashion-mnist" not in text  # the data ships
    extras = _ci(ROOT)["extras"]
    install = next(c for c in extras if "torch" in c)
    for package in ("torch==2.13.0", "pandas", "cupy-cuda13x", '"nvidia-cuda-nvrtc==13.*"'):
        assert package in install.split()
    assert '".[sklearn,distributed]"' in install.split()
    assert extras[-1] == readme_commands.two_commands(README)[1]  # the whole suite again


def test_ci_holds_the_gpu_path_to_its_coverage_floor():
    """The GPU tests on the stand-in, under coverage, fail CI below 95% of either part."""
    assert _ci(ROOT)["gpu_path"] == ["python benchmarks/gpu_coverage.py --fail-under 95"]


def test_a_failing_set_up_command_fails_ci_before_the_tests(tmp_path):
    block = re.search(r"## Two commands\n\n```bash\n(.*?)```", README, re.S).group(1)
    failing = README.replace(block, "python -c 'raise SystemExit(3)' && gpunet train\n"
                                    "python -m pytest -q\n")
    done = _ci(_copy(tmp_path, failing), dry=False)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "ci: exit 3 from: { python -c 'raise SystemExit(3)' && gpunet train --epochs 2; }" \
        in done.stderr
    assert "+ python -m pytest" not in done.stdout and "== stage extras" not in done.stdout


@pytest.mark.parametrize("line, expected", [
    ('pip install -e ".[dev]" && gpunet train   # set-up',
     'pip install -e ".[dev]" && gpunet train'),
    ("echo 'a # b' \"#c\"  # comment", "echo 'a # b' \"#c\""),
    ("echo a#b", "echo a#b"),
    ("# only a comment", ""),
])
def test_comments_are_dropped_outside_quotes(line, expected):
    assert readme_commands.without_comment(line) == expected


def test_a_readme_without_the_two_commands_is_an_error():
    with pytest.raises(ValueError, match="no ```bash block under '## Two commands'"):
        readme_commands.two_commands("# gpunet\n")
    with pytest.raises(ValueError, match="expected two commands"):
        readme_commands.two_commands("## Two commands\n\n```bash\nmake\n```\n")
    with pytest.raises(ValueError, match="expected one `gpunet train`"):
        readme_commands.with_train_options("pip install gpunet", ["--epochs", "2"])
