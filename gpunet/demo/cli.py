"""``gpunet demo NAME [--out DIR] [--device ...]`` and ``gpunet demo --list``.

``gpunet/cli.py`` calls :func:`add_parser` with its subparsers; errors raised here are
ValueErrors, which it reports as ``gpunet demo: error: ...`` (exit 2).
"""
from __future__ import annotations

import sys

from ..backend import DEVICES, get_backend
from . import DEMOS, module, plotting, run, titles

DEFAULT_OUT = "demos"
ALL = "all"


def add_parser(subparsers):
    """Add the ``demo`` command to ``subparsers`` (an argparse subparsers action)."""
    parser = subparsers.add_parser(
        "demo", help="reproduce a claim of the lecture with numbers and a figure",
        description="Each demo reproduces one claim of the lecture: it prints its conclusion "
                    "and writes DIR/NAME.png (needs matplotlib: pip install 'gpunet[plot]'). "
                    "gpunet demo --list names them.")
    parser.add_argument("name", nargs="?", choices=[*DEMOS, ALL], metavar="NAME",
                        help=f"one of {', '.join(DEMOS)}, or {ALL}")
    parser.add_argument("--list", action="store_true", help="list the demos and exit")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"folder for the figures, created if missing; an existing "
                             f"NAME.png is replaced (default: {DEFAULT_OUT})")
    parser.add_argument("--device", choices=DEVICES, default="cpu",
                        help="default: cpu (the demos' networks are tiny; gpu shows "
                             "throughput in batch-size)")
    parser.add_argument("--fast", action="store_true",
                        help="a smaller version (fewer seeds, steps and samples), as the "
                             "tests run it")
    parser.add_argument("--no-figure", action="store_true",
                        help="print the numbers only (no matplotlib needed)")
    parser.set_defaults(func=run_command)
    return parser


def run_command(args) -> int:
    """Run the demos that ``args`` names (or list them); the exit status."""
    if args.list:
        width = max(map(len, DEMOS))
        for name, title in titles().items():
            print(f"{name:<{width}}  {title}")
        return 0
    if args.name is None:
        raise ValueError(f"expected a demo NAME ({', '.join(DEMOS)} or {ALL}) or --list, "
                         f"got nothing")
    names = list(DEMOS) if args.name == ALL else [args.name]
    backend = get_backend(args.device)
    out = None if args.no_figure else args.out
    if out is not None:
        try:
            plotting.pyplot()
        except plotting.MatplotlibMissing as exc:
            print(f"gpunet demo: no figure: {exc}; the numbers follow", file=sys.stderr)
            out = None
        else:
            plotting.output_folder(out)  # a bad --out fails before anything runs
    for i, name in enumerate(names):
        if i:
            print()
        print(f"== {name} ({backend.name}): {module(name).TITLE}", flush=True)
        result = run(name, out, device=backend, fast=args.fast)
        written = f"wrote {result.figure}; " if result.figure is not None else ""
        print(f"({written}{result.seconds:.1f} s)", flush=True)
    return 0
