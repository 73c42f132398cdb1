"""A dependency-free progress bar for one training epoch, redrawn in place on a terminal.

On a stream that is not a terminal (a log file, CI output) it draws nothing, so logs hold
only the one-line epoch summaries.
"""
from __future__ import annotations

import shutil
import sys
import time

_WIDTH = 24


class ProgressBar:
    """``[#######.........]  120/469  loss 0.4123  acc 85.1%  rate 21.3k samples/s``.

    ``update(done, **numbers)`` redraws (``done`` steps of ``total``); ``close()`` wipes the
    line. ``interval`` (seconds) is how often the caller should read numbers from the device
    for an update: see :meth:`due`. The line never wraps (a wrapped line cannot be redrawn
    in place, and the terminal then shows the tail of the last one among the new): on a
    narrow terminal (``columns``, default: the terminal's width) the bar graphic goes
    first, then the line is cut.
    """

    def __init__(self, total, prefix="", *, stream=None, enabled=True, interval=0.25,
                 columns=None):
        self.total = total
        self.columns = columns
        self.prefix = prefix
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled) and _is_terminal(self.stream)
        self.interval = interval
        self._last = time.monotonic()
        self._drawn = 0

    def due(self) -> bool:
        """True when a redraw is wanted (enabled, and ``interval`` passed since the last)."""
        return self.enabled and time.monotonic() - self._last >= self.interval

    def update(self, done, **numbers):
        if not self.enabled:
            return
        self._last = time.monotonic()
        filled = _WIDTH * done // max(self.total, 1)
        bar = "[" + "#" * filled + "." * (_WIDTH - filled) + "] "
        fields = [f"{k} {v}" for k, v in numbers.items()]
        head = f"{self.prefix}{done:>{len(str(self.total))}}/{self.total}"
        room = (self.columns or shutil.get_terminal_size().columns) - 1
        line = "  ".join([f"{self.prefix}{bar}{head[len(self.prefix):]}", *fields])
        if len(line) > room:  # drop the bar, then whole fields from the end, then cut
            while fields and len("  ".join([head, *fields])) > room:
                fields.pop()
            line = "  ".join([head, *fields])[:room]
        self.stream.write("\r" + line.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(line)

    def close(self):
        if self.enabled and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def format_rate(samples_per_s) -> str:
    """A throughput in three significant figures: ``"950 samples/s"``, ``"24.3k samples/s"``."""
    if samples_per_s >= 1e6:
        return f"{samples_per_s / 1e6:.3g}M samples/s"
    if samples_per_s >= 1e3:
        return f"{samples_per_s / 1e3:.3g}k samples/s"
    return f"{samples_per_s:.3g} samples/s"
