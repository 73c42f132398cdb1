"""What every demo's computation shares: the record it returns and a quiet ``gn.fit``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..training.loop.fit import fit


@dataclass
class DemoResult:
    """A demo's outcome: its conclusion (one or two lines), the figure written (or None) and
    the seconds it took. Each demo extends it with its numbers."""

    conclusion: list = field(default_factory=list)
    figure: Path | None = None
    seconds: float = 0.0

    def report(self) -> list:
        """The lines the demo prints (the backprop demo adds its step-by-step trace)."""
        return list(self.conclusion)


def train(model, loss_fn, optimizer, data, *, epochs, batch_size=None, val=None, seed=0,
          schedule=None):
    """:func:`gpunet.fit` without a progress bar or per-epoch lines; its History."""
    return fit(model, loss_fn, optimizer, data, val, epochs=epochs, batch_size=batch_size,
               seed=seed, schedule=schedule, progress=False, verbose=False)


def compact(values, fmt="{:.2g}"):
    """Numbers joined by ", " in ``fmt`` (for conclusions)."""
    return ", ".join(fmt.format(v) for v in values)
