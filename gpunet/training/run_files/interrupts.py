"""SIGTERM handled like Ctrl-C: within :func:`sigterm_as_interrupt`, SIGTERM raises
:class:`Terminated`, a ``KeyboardInterrupt``, where the program runs, so cleanup code and the
"what was saved" message run as they do on Ctrl-C."""
from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """Raised by SIGTERM inside :func:`sigterm_as_interrupt`."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, the first SIGTERM raises :class:`Terminated` (a second one acts as
    before the block, by default ending the process). Only the main thread receives
    signals, so elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:  # installed outside Python: nothing to give back
        previous = signal.SIG_DFL

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, previous)
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
