"""The lecture, runnable: each demo reproduces one claim of the lecture with numbers and a figure.

    from gpunet import demo
    result = demo.run("xor", out="figures")   # prints the conclusion, writes figures/xor.png
    result.conclusion, result.figure

Demos (``gpunet demo --list``): ``xor``, ``approximation``, ``activations``, ``descent``,
``batch-size``, ``backprop``. Each runs in seconds on a CPU; ``fast=True`` is a smaller
version for the tests. Figures need matplotlib (the ``plot`` extra). The command line is
``gpunet demo NAME [--out DIR] [--device ...]`` (see ``cli.py``).
"""
from __future__ import annotations

import importlib
import time

from ..backend import get_backend
from . import plotting

#: demo name -> module in this package, in the lecture's order
DEMOS = {"xor": "xor", "approximation": "approximation", "activations": "activations",
         "descent": "descent", "batch-size": "batch_size", "backprop": "backprop"}

__all__ = ["DEMOS", "module", "run", "titles"]


def module(name):
    """The module of demo ``name``; ValueError naming the demos for any other name."""
    if not isinstance(name, str) or name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; expected one of: {', '.join(DEMOS)}")
    return importlib.import_module(f"{__name__}.{DEMOS[name]}")


def titles():
    """``{name: the claim it shows}`` for every demo."""
    return {name: module(name).TITLE for name in DEMOS}


def run(name, out=None, *, device="cpu", fast=False, verbose=True):
    """Run demo ``name`` on ``device``; print its conclusion (``verbose``); with ``out`` (a
    folder, created if missing) also write ``out/NAME.png``. Returns the demo's result
    (``conclusion``, ``figure``, ``seconds`` taken, figure included, and its numbers).

    A missing matplotlib raises :class:`plotting.MatplotlibMissing` before any computing
    when ``out`` is given; ``out=None`` needs no matplotlib.
    """
    demo = module(name)
    if not isinstance(fast, bool):
        raise TypeError(f"fast must be True or False, got {fast!r}")
    backend = get_backend(device)
    folder = None
    if out is not None:
        plotting.pyplot()
        folder = plotting.output_folder(out)
    started = time.perf_counter()
    result = demo.run(backend, fast=fast)
    if verbose:
        print("\n".join(result.report()), flush=True)
    if folder is not None:
        result.figure = demo.plot(result, folder / f"{name}.png")
    result.seconds = time.perf_counter() - started
    return result
