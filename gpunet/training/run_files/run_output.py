"""What ``gpunet train`` writes beside its checkpoint: ``metrics.csv`` and ``metrics.json``
after every epoch (each replaced atomically, so a reader never sees half a line or invalid
JSON), and ``curves.png`` at the end.

``metrics.json`` holds ``status`` (``"running"``, ``"finished"``, ``"interrupted"`` after
Ctrl-C or SIGTERM, ``"failed"`` after an error; a killed run stays ``"running"``),
``device``, ``config``, ``epochs`` (one record per finished epoch, the columns of
:data:`gpunet.training.history.COLUMNS`) and ``test`` (the test result, once finished).
"""
from __future__ import annotations

import json
import os

from .atomic import write_text
from ..loop.history import History

METRIC_FILES = ("metrics.csv", "metrics.json")


class MetricsWriter:
    """Rewrites the metrics files of the run folder ``out`` as epochs finish: pass
    :meth:`epoch_done` as ``fit``'s ``on_epoch_end``. ``records`` are the epochs of a
    resumed run."""

    def __init__(self, out, config, device, records=()):
        self.out = out
        self.config = config
        self.device = device
        self.history = History(records)

    def epoch_done(self, record):
        self.history.append(record)
        self.write("running")

    def write(self, status, test=None):
        """Replace both files with the epochs so far; ``test`` is a dict or None."""
        summary = {"status": status, "device": self.device, "config": self.config,
                   "epochs": self.history.records, "test": test}
        self.history.to_csv(os.path.join(self.out, "metrics.csv"))
        write_text(os.path.join(self.out, "metrics.json"),
                   json.dumps(summary, indent=1) + "\n", what="metrics file")

    def stopped(self, status):
        """Record why the run ended early, if there is anything to record; a failure to
        write (the disk may be why the run stopped) is not reported over the first one."""
        if len(self.history):
            try:
                self.write(status)
            except OSError:
                pass

    def finish(self, history, test_result):
        """The final files (with ``history``, fit's own records), then ``curves.png``;
        returns the names written."""
        self.history = History(history.records)
        self.write("finished", test_result._asdict())
        names = list(METRIC_FILES)
        try:
            plot_curves(history, os.path.join(self.out, "curves.png"))
            names.append("curves.png")
        except ImportError as exc:
            print(f"curves.png skipped: matplotlib is not installed ({exc}); "
                  f"pip install gpunet[plot]")
        return names


def plot_curves(history, path):
    """Loss and accuracy per epoch (training and validation) as a PNG; needs matplotlib."""
    curves_figure(history).savefig(path, dpi=100)


def curves_figure(history):
    """The figure of :func:`plot_curves`: two panels, whole epochs on the x axes. Built
    without pyplot (no GUI backend, nothing to close)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = history["epoch"]
    fig = Figure(figsize=(10, 4))
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        for split in ("train", "val"):
            values = history[f"{split}_{metric}"]
            if any(v is not None for v in values):
                ax.plot(epochs, values, marker="o", markersize=3, label=split)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # never 2.5
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
