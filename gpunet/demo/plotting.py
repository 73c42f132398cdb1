"""What every demo figure shares: matplotlib (the ``plot`` extra) on the file-only Agg backend,
the output folder, one figure of side-by-side panels, and its atomic save as a PNG."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

from ..training.run_files.atomic import atomic_write

DPI = 100
PANEL_SIZE = (4.6, 3.8)  # inches per panel
TITLE_CHARS = 50         # characters of the figure's title per panel of width
INSTALL_HINT = "pip install 'gpunet[plot]'"


class MatplotlibMissing(ImportError):
    """The figure needs matplotlib, which is not installed."""


def pyplot():
    """matplotlib's pyplot on the Agg backend; :class:`MatplotlibMissing` without it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise MatplotlibMissing(f"the figure needs matplotlib, which is not installed "
                                f"({exc}): {INSTALL_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def output_folder(out) -> Path:
    """``out`` as a folder that exists and can be written, created if missing; a ValueError
    that says what was expected and what was found otherwise."""
    path = Path(out)
    what = "the folder for the figures (--out)"
    if path.exists() and not path.is_dir():
        raise ValueError(f"expected {what}, got {out!s}, which is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create {what} {out!s}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"expected {what} to be writable, got {out!s}, which is not")
    return path


def panels(count, title, *, rows=1, widths=None):
    """A figure of ``count`` panels (in ``rows`` rows) under ``title``: ``(fig, axes)``.
    ``widths``: the panels' relative widths in one row (default: equal)."""
    plt = pyplot()
    cols = -(-count // rows)
    span = sum(widths) if widths else cols
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_SIZE[0] * span, PANEL_SIZE[1] * rows),
                             squeeze=False, gridspec_kw={"width_ratios": widths})
    fig.suptitle(textwrap.fill(title, int(TITLE_CHARS * span)))
    return fig, list(axes.flat)[:count]


def save(fig, path) -> Path:
    """Write ``fig`` to ``path`` as a PNG (atomically) and close it; return the path."""
    plt = pyplot()
    try:
        fig.tight_layout()
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI), what="figure")
    finally:
        plt.close(fig)
    return Path(path)
