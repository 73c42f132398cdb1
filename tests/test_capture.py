"""CUDA-graph capture of the static step (``training/engine/capture.py``) on the CPU, with stand-ins
for the stream, the graph and the clock: what runs at each call under graph="on" and
graph="auto" (the timed trial and its choice), and a recording that fails."""
import contextlib
from types import SimpleNamespace

import numpy as np
import pytest

import gpunet as gn
from gpunet.training.engine.capture import TILED, TRIALS, CapturedStep, GraphChoice
from gpunet.training.engine.step_runner import StepRunner
from test_static_step import _data, _model

USUAL = ((10, "cublas"),)


class _Static:
    """A static step that logs each call: ``("run", routes)`` for a run (the GEMM routes
    it saw), ``"replayed"`` for the host bookkeeping after a replay."""

    what = "training step"

    def __init__(self, log):
        self.log, self.ops = log, SimpleNamespace(gemm_routes=USUAL)
        self.recorded = False

    def run(self):
        self.log.append(("record" if self.recorded else "run", self.ops.gemm_routes))

    def check(self):
        pass

    def replayed(self):
        self.log.append("replayed")

    @contextlib.contextmanager
    def recording(self):
        self.recorded = True
        try:
            yield
        finally:
            self.recorded = False


class _Stream:
    """Records by noting that the capture began and ended; the graph logs its launches."""

    def __init__(self, log):
        self.log = log

    def begin_capture(self):
        self.log.append("begin")

    def end_capture(self):
        self.log.append("end")
        return SimpleNamespace(launch=lambda stream: self.log.append("launch"))


class _Clock:
    """Marks are positions in the log; a span holding a launch took ``replay_ms``, any
    other ``uncaptured_ms``."""

    def __init__(self, log, replay_ms, uncaptured_ms):
        self.log, self.replay_ms, self.uncaptured_ms = log, replay_ms, uncaptured_ms
        self.readings = 0

    def mark(self):
        return len(self.log)

    def milliseconds(self, start, end):
        self.readings += 1
        return self.replay_ms if "launch" in self.log[start:end] else self.uncaptured_ms


def _auto(replay_ms, uncaptured_ms):
    log = []
    choice = GraphChoice(strict=False, clock=_Clock(log, replay_ms, uncaptured_ms))
    main = CapturedStep(_Static(log), _Stream(log), choice, measures=True)
    follower_log = []
    follower = CapturedStep(_Static(follower_log), _Stream(follower_log), choice)
    return log, choice, main, follower, follower_log


def _calls(step, log, n):
    """What each of ``n`` calls of ``step.run()`` added to ``log``."""
    out = []
    for _ in range(n):
        before = len(log)
        step.run()
        out.append(log[before:])
    return out


def test_graph_on_warms_up_records_and_replays_from_the_second_call():
    log = []
    step = CapturedStep(_Static(log), _Stream(log), GraphChoice(strict=True))
    assert _calls(step, log, 3) == [[("run", TILED)],
                                    ["begin", ("record", TILED), "end", "launch", "replayed"],
                                    ["launch", "replayed"]]


@pytest.mark.parametrize("replay_ms, graph", [(0.4, True), (1.5, False)])
def test_graph_auto_times_both_ways_then_keeps_the_faster(replay_ms, graph):
    log, choice, main, follower, follower_log = _auto(replay_ms, 1.0)
    trial = _calls(main, log, 2 * TRIALS + 2)
    assert trial[:TRIALS + 1] == [[("run", USUAL)]] * (TRIALS + 1)  # warm-up, timed
    assert trial[TRIALS + 1] == [("run", TILED)]                      # the tiled warm-up
    assert trial[TRIALS + 2][:3] == ["begin", ("record", TILED), "end"]
    assert trial[TRIALS + 2][3:] == ["launch", "replayed"]
    assert trial[TRIALS + 3:] == [["launch", "replayed"]] * (TRIALS - 1)
    assert choice.graph is graph and choice.clock.readings == 2 * TRIALS
    assert _calls(main, log, 2) == [["launch", "replayed"] if graph else [("run", USUAL)]] * 2
    news = choice.news()
    assert news == (f"graph: {'on' if graph else 'off'} (a step takes {replay_ms:.3f} ms "
                    f"replayed, 1.000 ms uncaptured; median of {TRIALS} each)")
    assert choice.news() is None  # said once
    # the follower ran uncaptured meanwhile; now it takes the choice
    assert _calls(follower, follower_log, 2) == (
        [[("run", TILED)], ["begin", ("record", TILED), "end", "launch", "replayed"]] if graph
        else [[("run", USUAL)]] * 2)


def test_ranks_decide_on_the_largest_times_over_all_ranks():
    """Data parallelism: this rank's replays were faster, another rank's were not."""
    log, seen = [], []

    def agree(replay_ms, uncaptured_ms):
        seen.append((replay_ms, uncaptured_ms))
        return max(replay_ms, 2.0), max(uncaptured_ms, 1.0)

    choice = GraphChoice(strict=False, clock=_Clock(log, 0.4, 1.0), agree=agree)
    step = CapturedStep(_Static(log), _Stream(log), choice, measures=True)
    _calls(step, log, 2 * TRIALS + 2)
    assert seen == [(0.4, 1.0)] and choice.graph is False
    assert "2.000 ms replayed, 1.000 ms uncaptured" in choice.news()


class _FailingStream(_Stream):
    def begin_capture(self):
        raise RuntimeError("operation not permitted when stream is capturing")


def test_a_failed_recording_under_auto_still_decides_at_the_same_step():
    """Every rank calls ``agree`` at the same step, whether its recording worked or not."""
    log, seen = [], []
    choice = GraphChoice(strict=False, clock=_Clock(log, 0.4, 1.0),
                         agree=lambda *times: seen.append(times) or times)
    step = CapturedStep(_Static(log), _FailingStream(log), choice, measures=True)
    with pytest.warns(RuntimeWarning, match="recording the training step failed"):
        calls = _calls(step, log, 2 * TRIALS + 1)
    assert calls[TRIALS + 2:] == [[("run", USUAL)]] * (TRIALS - 1) and seen == []
    _calls(step, log, 1)
    assert seen == [(float("inf"), 1.0)] and choice.graph is False
    assert choice.news() == "graph: off (recording the step failed on a rank: see the warning)"


def test_a_step_that_raised_says_so_when_run_again_and_release_drops_the_graph():
    log = []
    static = _Static(log)
    static.run = lambda: (_ for _ in ()).throw(ValueError("bad label"))
    static.what = "evaluation step"
    step = CapturedStep(static, _Stream(log), GraphChoice(strict=True))
    with pytest.raises(ValueError, match="bad label"):
        step.run()
    with pytest.raises(RuntimeError, match="this evaluation step raised earlier"):
        step.run()
    good = CapturedStep(_Static(log), _Stream(log), GraphChoice(strict=True))
    _calls(good, log, 2)
    assert good.graph is not None
    good.release()
    assert good.graph is None


def test_the_follower_runs_uncaptured_until_the_choice_is_made():
    _, choice, _, follower, follower_log = _auto(0.4, 1.0)
    assert _calls(follower, follower_log, 3) == [[("run", USUAL)]] * 3
    assert choice.graph is None and choice.news() is None


def test_a_run_too_short_to_time_says_so_when_it_ends():
    X, y = _data(n=100)
    model = _model()
    log = []
    runner = StepRunner(model, gn.optim.SGD(model.parameters(), lr=0.01), X, y, 32, 4,
                        _RefusingStream(), strict=False, clock=_Clock(log, 1, 1))
    runner.start_epoch()
    for step in range(runner.count):
        runner.run(step)
    assert runner.graph_news() is None
    assert runner.graph_news(ended=True) == (
        f"graph: off (the run ended after 3 full steps, before the {2 * TRIALS + 2} that "
        f"timing the graph takes)")


class _RefusingStream:
    """Stands in for a CUDA stream on which recording a graph fails (as CuPy refusing a call,
    or a host synchronisation, inside the step would)."""

    def begin_capture(self):
        raise RuntimeError("operation not permitted when stream is capturing")

    def synchronize(self):
        """Nothing queued on the CPU."""


def _epoch_of(runner):
    runner.start_epoch()
    for step in range(runner.count):
        runner.run(step)


def test_a_failed_recording_falls_back_to_the_uncaptured_step_unless_strict():
    X, y = _data()
    results = []
    for stream, strict in ((None, True), (_RefusingStream(), False)):
        gn.manual_seed(0)
        model = _model()
        opt = gn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        runner = StepRunner(model, opt, X, y, 32, 11, stream, strict=strict,
                            clock=_Clock([], 1, 1))
        with pytest.warns(RuntimeWarning, match="recording the training step failed") \
                if stream is not None else contextlib.nullcontext():
            for _ in range(2):
                _epoch_of(runner)
        runner.close()
        results.append(([p.data.copy() for p in model.parameters()], opt.step_count, runner))
    (plain, plain_steps, _), (fallback, fallback_steps, fell_back) = results
    assert plain_steps == fallback_steps == 22
    for a, b in zip(plain, fallback):
        np.testing.assert_array_equal(a, b)
    assert fell_back.graph_news() == ("graph: off (recording the step failed: see the "
                                      "warning)")
    model = _model()
    opt = gn.optim.SGD(model.parameters(), lr=0.01)
    strict = StepRunner(model, opt, X, y, 32, 11, _RefusingStream(), strict=True)
    with pytest.raises(RuntimeError, match="capturing"):
        _epoch_of(strict)
    assert opt.step_count == 1  # the warm-up step only: the failed recording took none


def test_evaluation_steps_are_captured_under_on_only():
    """graph="auto" timed the training step's shape: evaluation batches stay uncaptured."""
    X, y = _data()
    for strict, captured in ((True, True), (False, False)):
        model = _model()
        runner = StepRunner(model, gn.optim.SGD(model.parameters(), lr=0.01), X, y, 32, 11,
                            _RefusingStream(), strict=strict, clock=_Clock([], 1, 1))
        steps, _, rows = runner._evaluation_steps(X, y, 100)
        assert rows == [100, 100, 100, 30] and len(steps) == 2
        assert all(isinstance(step, CapturedStep) == captured for step in steps)
        runner.close()
