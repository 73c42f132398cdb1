"""The process-wide schedule later launches run under (see runtime/scheduler.h)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

MODES = {"sequential": 0, "shuffled": 1, "concurrent": 2}


@dataclass(frozen=True)
class Schedule:
    """``mode``: "sequential" (blocks in grid order, threads in index order), "shuffled"
    (blocks, and a block's threads at each barrier and shuffle, in a seeded random order) or
    "concurrent" (also ``resident`` blocks at once, a random ready thread of any of them
    resumed at every barrier, shuffle, atomic and fence); ``seed`` makes it repeatable."""

    mode: str = "sequential"
    seed: int = 0
    resident: int = 4

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"schedule mode {self.mode!r}: expected one of {sorted(MODES)}")
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"seed {self.seed} is outside 0..2**64-1")
        if not 2 <= self.resident <= 64:
            raise ValueError(f"resident={self.resident}: expected 2..64 blocks at once")


_current = Schedule()
_launches = 0  # launches since the schedule was set: each gets its own seed from it


def set_schedule(mode: str = "sequential", seed: int = 0, resident: int = 4) -> None:
    """The schedule of every later launch in this process (until set again)."""
    global _current, _launches
    _current, _launches = Schedule(mode, seed, resident), 0


def get_schedule() -> Schedule:
    return _current


@contextlib.contextmanager
def scheduled(mode: str, seed: int = 0, resident: int = 4):
    """``set_schedule`` for a ``with`` block, the previous schedule restored after it."""
    previous = _current
    set_schedule(mode, seed, resident)
    try:
        yield
    finally:
        set_schedule(previous.mode, previous.seed, previous.resident)


def launch_schedule() -> tuple[Schedule, int]:
    """The schedule for the next launch and that launch's seed (the n-th launch after
    set_schedule gets the same seed in every run)."""
    global _launches
    _launches += 1
    return _current, (_current.seed * 0x9E3779B97F4A7C15 + _launches) % 2**64
