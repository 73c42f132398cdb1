"""The README's "Two commands", read from the README itself (never a copy of them): the set-up
line and the test line of the first ``bash`` block under "## Two commands", comments dropped.

    python3 .ci/readme_commands.py README.md setup --epochs 2   # the set-up line, its
                                                                # `gpunet train` given the options
    python3 .ci/readme_commands.py README.md test               # the test line

``.ci/run`` runs them in its first stage; ``tests/test_ci.py`` checks both ends.
"""
from __future__ import annotations

import re
import shlex
import sys

HEADING = "## Two commands"
TRAIN = re.compile(r"(?<!\S)gpunet train(?!\S)")


def two_commands(readme: str) -> tuple[str, str]:
    """``(set-up, test)``: the two command lines of the block under :data:`HEADING`."""
    _, found, section = ("\n" + readme).partition("\n" + HEADING + "\n")
    block = re.search(r"^```bash\n(.*?)^```", section, re.M | re.S) if found else None
    if block is None:
        raise ValueError(f"no ```bash block under {HEADING!r} in the README")
    lines = [without_comment(line) for line in block.group(1).splitlines()]
    commands = [line for line in lines if line]
    if len(commands) != 2:
        raise ValueError(f"expected two commands under {HEADING!r}, got {commands}")
    return commands[0], commands[1]


def without_comment(line: str) -> str:
    """``line`` without its trailing ``# comment`` (a ``#`` starting a word, outside quotes)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def with_train_options(setup: str, options: list[str]) -> str:
    """``setup`` with ``options`` right after its one ``gpunet train``."""
    if len(TRAIN.findall(setup)) != 1:
        raise ValueError(f"expected one `gpunet train` in the set-up command, got {setup!r}")
    return TRAIN.sub(lambda m: " ".join(["gpunet train", *map(shlex.quote, options)]), setup)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("setup", "test") or (argv[1] == "test" and argv[2:]):
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as readme:
        setup, test = two_commands(readme.read())
    print(with_train_options(setup, argv[2:]) if argv[1] == "setup" else test)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
