"""CUDA-graph capture of a static step (``step.py``) on the GPU: run it once (warm-up: its
buffers are made, its kernels compiled), record it on the next call, then replay it.

``graph="on"`` captures every step from the start and raises when a recording fails.
``graph="auto"`` lets the clock decide: the training run's full-batch step is timed
:data:`TRIALS` times uncaptured (its GEMMs on the usual routes, cuBLAS) and :data:`TRIALS`
times replayed (its GEMMs on the tiled kernel, the only one CuPy lets a capture hold); the
faster wins for every training step of the run (the last batch follows the choice; the
evaluation batches are captured under ``"on"`` only). A recording that fails under ``auto``
warns and the step runs uncaptured.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any

# CuPy 14.2 refuses cuBLAS while the current stream captures, on every path to it: a float
# cupy.matmul/dot ends in cublas.gemmEx (cupy/_core/_routines_linalg.pyx line 775), whose
# wrapper (cupy_backends/cuda/libs/cublas.pyx line 1639) first calls _setStream (line 666),
# and setStream (lines 642-652) raises NotImplementedError on a capturing stream; so do the
# other GEMM wrappers there. Only products that reach no cuBLAS (integer, empty, 1 x 1)
# capture. Hence a captured step's GEMMs are the tiled kernel's.
TILED = ((math.inf, "tiled"),)
TRIALS = 5  # steps timed each way before graph="auto" chooses


@contextlib.contextmanager
def tiled_gemms(ops):
    """Every GEMM of ``ops`` on the tiled kernel inside the block (the warm-up run before a
    recording uses the same products). Ops without GEMM routes (the NumPy ones) are left as
    they are."""
    if not hasattr(ops, "gemm_routes"):
        yield
        return
    routes, ops.gemm_routes = ops.gemm_routes, TILED
    try:
        yield
    finally:
        ops.gemm_routes = routes


class DeviceClock:
    """Device time between CUDA events on ``stream`` (``cuda``: CuPy's ``cupy.cuda``)."""

    def __init__(self, cuda, stream):
        self.cuda, self.stream = cuda, stream

    def mark(self):
        """An event recorded on the stream now."""
        event = self.cuda.Event()
        event.record(self.stream)
        return event

    def milliseconds(self, start, end) -> float:
        """Time from event ``start`` to ``end`` (waits for ``end``: a host synchronisation)."""
        end.synchronize()
        return self.cuda.get_elapsed_time(start, end)


class GraphChoice:
    """Whether a run's static steps are replayed as CUDA graphs: ``True`` from the start
    with ``strict`` (``graph="on"``), else ``None`` until the timing decides (``"auto"``).
    ``agree(replay_ms, uncaptured_ms)``: the times every rank of a data-parallel job decides
    on (the largest of each), so that all take the same way."""

    def __init__(self, strict: bool, clock=None, agree=None):
        self.strict, self.clock, self.agree = strict, clock, agree
        self.graph: bool | None = True if strict else None
        self.why: str | None = None
        self._told = strict

    def decide(self, replay_ms: float, uncaptured_ms: float) -> None:
        """Choose by the times (``replay_ms`` infinite: the recording failed)."""
        if self.agree is not None:
            replay_ms, uncaptured_ms = self.agree(replay_ms, uncaptured_ms)
        self.graph = replay_ms < uncaptured_ms
        if math.isinf(replay_ms):
            self.why = ("recording the step failed" + (" on a rank" if self.agree else "")
                        + ": see the warning")
        else:
            self.why = (f"a step takes {replay_ms:.3f} ms replayed, {uncaptured_ms:.3f} ms "
                        f"uncaptured; median of {TRIALS} each")

    def news(self) -> str | None:
        """The one line saying what was chosen, the first time it is asked once known."""
        if self._told or self.graph is None:
            return None
        self._told = True
        return f"graph: {'on' if self.graph else 'off'} ({self.why})"

    def undecided(self, steps_run: int) -> str | None:
        """The line for a run that ended before the choice was made."""
        if self.graph is not None:
            return None
        return (f"graph: off (the run ended after {steps_run} full steps, before the "
                f"{2 * TRIALS + 2} that timing the graph takes)")


class CapturedStep:
    """A static step on the GPU, run by calling :meth:`run` once per step. ``measures``:
    this step's timing makes ``choice`` (the run's full-batch training step under
    ``graph="auto"``); the others run uncaptured until ``choice`` is made, then follow it."""

    def __init__(self, static, stream, choice: GraphChoice, measures: bool = False):
        self.static, self.stream, self.choice = static, stream, choice
        self.graph: Any = None  # a cupy.cuda.Graph once recorded
        self.runs = 0
        self._steps = self._measured() if measures and choice.graph is None \
            else self._as_chosen()

    def run(self) -> None:
        self.runs += 1
        try:
            next(self._steps)
        except StopIteration:
            raise RuntimeError(f"this {self.static.what} raised earlier and cannot run again; "
                               f"start a new run") from None

    def release(self) -> None:
        """Drop the graph and the step sequence (its frame refers back to this step)."""
        self._steps.close()
        self.graph = None

    def _as_chosen(self):
        """Uncaptured while the choice is open; then warm-up, record and replays, or
        uncaptured on."""
        static = self.static
        while self.choice.graph is None:
            static.run()
            yield
        if self.choice.graph:
            with tiled_gemms(static.ops):
                static.run()
            yield
            if self._record():
                while True:
                    self._replay()
                    yield
        while True:
            static.run()
            yield

    def _measured(self):
        """graph="auto"'s trial: a warm-up, :data:`TRIALS` timed uncaptured steps, a tiled
        warm-up, the recording and :data:`TRIALS` timed replays (or, when the recording failed,
        as many uncaptured steps); then the faster way on."""
        static, clock = self.static, self.choice.clock
        static.run()
        yield
        uncaptured = []
        for _ in range(TRIALS):
            uncaptured.append(self._timed(static.run))
            yield
        with tiled_gemms(static.ops):
            static.run()
        yield
        recorded, replays = self._record(), []
        for index in range(TRIALS):  # the same count either way: ranks decide together
            if index:
                yield
            if recorded:
                replays.append(self._timed(self._replay))
            else:
                static.run()
        self.choice.decide(_median(clock, replays) if recorded else math.inf,
                           _median(clock, uncaptured))
        run = self._replay if self.choice.graph else static.run
        while True:
            yield
            run()

    def _timed(self, run):
        clock = self.choice.clock
        start = clock.mark()
        run()
        return start, clock.mark()

    def _replay(self) -> None:
        self.static.check()
        self.graph.launch(self.stream)
        self.static.replayed()

    def _record(self) -> bool:
        """Record one step as ``self.graph`` (its kernels are not executed); False when that
        failed and ``choice`` is not strict (a warning says why)."""
        try:
            with self.static.recording(), tiled_gemms(self.static.ops):
                self.stream.begin_capture()
                try:
                    self.static.run()
                except BaseException:  # the step's own error, not end_capture's on top of it
                    with contextlib.suppress(Exception):
                        self.stream.end_capture()
                    raise
                self.graph = self.stream.end_capture()
            return True
        except Exception as exc:
            if self.choice.strict:
                raise
            warnings.warn(f"graph: recording the {self.static.what} failed "
                          f"({type(exc).__name__}: {exc}); it runs uncaptured from here on",
                          RuntimeWarning, stacklevel=3)
            return False


def _median(clock, spans) -> float:
    times = sorted(clock.milliseconds(start, end) for start, end in spans)
    return times[len(times) // 2]
