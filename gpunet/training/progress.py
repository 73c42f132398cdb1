"""A dependency-free progress bar for one training epoch, redrawn in place on a terminal.

On a stream that is not a terminal (a log file, CI output) it draws nothing, so logs hold
only the one-line epoch summaries.
"""
from __future__ import annotations

import sys
import time

_WIDTH = 24


class ProgressBar:
    """``[#######.........]  120/469  loss 0.4123  acc 85.1%  21.3k samples/s``.

    ``update(done, **numbers)`` redraws (``done`` steps of ``total``); ``close()`` wipes the
    line. ``interval`` (seconds) is how often the caller should read numbers from the device
    for an update: see :meth:`due`.
    """

    def __init__(self, total, prefix="", *, stream=None, enabled=True, interval=0.25):
        self.total = total
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
        bar = "#" * filled + "." * (_WIDTH - filled)
        fields = "  ".join(f"{k} {v}" for k, v in numbers.items())
        line = f"{self.prefix}[{bar}] {done:>{len(str(self.total))}}/{self.total}  {fields}"
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
