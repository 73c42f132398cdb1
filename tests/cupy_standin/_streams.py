"""Streams, events, CUDA graphs and stream capture, as CuPy 14.2 and CUDA behave.

The stand-in has no asynchrony: work issued to a stream outside a capture runs at once, so
every stream is always complete. Inside ``Stream.begin_capture()`` ... ``end_capture()`` work
issued to the capturing stream is recorded as graph nodes, not run; ``Graph.launch()`` runs
the nodes in order, reading device memory at that moment (a value frozen on the host at
capture time stays frozen, as on a device).

Rules (CuPy v14.2.0 source; CUDA Programming Guide, "Prohibited and Unhandled Operations"):

- ``begin_capture`` refuses the legacy default stream (``cupy/cuda/stream.pyx`` line 394)
  and defaults to ``cudaStreamCaptureModeRelaxed`` (lines 395-403).
- Synchronising a capturing stream, an event recorded in a capture, or the device is
  illegal; CUDA invalidates the capture and ``end_capture`` fails with
  ``cudaErrorStreamCaptureInvalidated``.
- Work on the legacy default stream while a *blocking* stream captures would make the legacy
  stream wait for it: ``cudaErrorStreamCaptureImplicit``, the capture invalidated.
- Host transfers on a capturing current stream are refused by CuPy before CUDA sees them
  (``cupy/cuda/memory.pyx`` lines 526-723, see ``_memory.py``); the capture stays valid.

A fake clock (microseconds) gives events their times: an eager operation costs
:data:`EAGER_US`, a graph launch :data:`GRAPH_LAUNCH_US` plus :data:`NODE_US` per node.
"""
from __future__ import annotations

import itertools
import weakref

from . import _errors

EAGER_US = 5.0        # one kernel launch or copy issued outside a graph
GRAPH_LAUNCH_US = 5.0
NODE_US = 1.0         # one node of a replayed graph

_pointers = itertools.count(0x7F00_0000_1000, 0x100)
_clock = [0.0]
_by_pointer: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class _Capture:
    """The nodes recorded on one capturing stream, and why the capture broke, if it did."""

    def __init__(self, stream):
        self.stream = stream
        self.nodes: list = []
        self.invalid: str | None = None


class _State:
    """The current stream stack and the open captures of this (single-threaded) process."""

    def __init__(self):
        self.stack: list = []
        self.current = None  # set by Stream.use(); None: the null stream
        self.captures: dict = {}  # stream ptr -> _Capture


_state = _State()


def capturing() -> list:
    """The open captures."""
    return list(_state.captures.values())


def reset() -> None:
    """Forget the stream stack and every open capture (a test's end)."""
    _state.stack.clear()
    _state.current = None
    _state.captures.clear()


class Event:
    """``cupy.cuda.Event(block=False, disable_timing=False, interprocess=False)``."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        if interprocess and not disable_timing:
            raise ValueError('Timing must be disabled for interprocess events')
        self.ptr = next(_pointers)
        self.disable_timing = disable_timing
        self._time: float | None = None
        self._captured_in: _Capture | None = None

    @property
    def done(self) -> bool:
        return self._captured_in is None

    def record(self, stream=None) -> None:
        (stream or get_current_stream())._record_event(self)

    def synchronize(self) -> None:
        capture = self._captured_in
        if capture is not None and capture.stream.ptr in _state.captures:
            _errors.illegal_during_capture(capture, "cudaEventSynchronize on an event "
                                                    "recorded in a capture")


def get_elapsed_time(start_event, end_event) -> float:
    """Milliseconds between two recorded events (CuPy: ``cupy/cuda/stream.pyx`` line 166)."""
    for event in (start_event, end_event):
        if event._time is None or event.disable_timing:
            raise _errors.CUDARuntimeError(
                "cudaErrorInvalidResourceHandle: invalid resource handle (an event not "
                "recorded outside a capture, or created with disable_timing=True)")
    return (end_event._time - start_event._time) / 1000.0


class Stream:
    """``cupy.cuda.Stream(null=False, non_blocking=False, ptds=False, priority=None)``."""

    null: Stream
    ptds: Stream

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        if null:
            self.ptr, self.device_id = 0, -1
        elif ptds:
            self.ptr, self.device_id = 2, -1
        else:
            from . import _device
            self.ptr, self.device_id = next(_pointers), _device.current_id()
        self.non_blocking = bool(non_blocking) and not null
        self.priority = 0 if priority is None else int(priority)
        _by_pointer[self.ptr] = self

    def __eq__(self, other):
        return isinstance(other, Stream) and self.ptr == other.ptr

    def __hash__(self):
        return self.ptr

    def __repr__(self):
        return f"<Stream {self.ptr} (device {self.device_id})>"

    def __enter__(self):
        _state.stack.append(self)
        return self

    def __exit__(self, *args):
        _state.stack.pop()

    def use(self):
        _state.current = self
        return self

    @property
    def is_non_blocking(self) -> bool:
        return self.non_blocking

    @property
    def done(self) -> bool:
        self._check_sync("cudaStreamQuery on a capturing stream")
        return True

    def synchronize(self) -> None:
        """Waits for the stream's work (all done already, outside a capture)."""
        self._check_sync("cudaStreamSynchronize on a capturing stream")

    def record(self, event=None):
        event = Event() if event is None else event
        self._record_event(event)
        return event

    def wait_event(self, event) -> None:
        """Later work waits for ``event``: the stand-in's work is done when issued."""
        issue(lambda: None, self, cost=0.0)

    def begin_capture(self, mode=None) -> None:
        if self.ptr in (0, 1):
            raise RuntimeError('cannot capture on the default (legacy) stream')
        if self.ptr in _state.captures:
            raise _errors.CUDARuntimeError("cudaErrorIllegalState: the stream is already "
                                           "capturing")
        _state.captures[self.ptr] = _Capture(self)

    def end_capture(self):
        capture = _state.captures.pop(self.ptr, None)
        if capture is None:
            raise _errors.CUDARuntimeError("cudaErrorIllegalState: the stream is not "
                                           "capturing")
        if capture.invalid is not None:
            raise _errors.CUDARuntimeError(
                f"cudaErrorStreamCaptureInvalidated: operation failed due to a previous error "
                f"during capture ({capture.invalid})")
        return Graph._from_nodes(capture.nodes)

    def is_capturing(self) -> bool:
        return self.ptr in _state.captures

    def _record_event(self, event) -> None:
        capture = _state.captures.get(self.ptr)
        if capture is not None:
            event._captured_in = capture

            def stamp():
                event._time, event._captured_in = _clock[0], None
            capture.nodes.append((stamp, 0.0))
            return
        event._time, event._captured_in = _clock[0], None

    def _check_sync(self, what: str) -> None:
        capture = _state.captures.get(self.ptr)
        if capture is not None:
            _errors.illegal_during_capture(capture, what)
        if self.ptr == 0:
            _check_legacy(what)


def _check_legacy(what: str) -> None:
    """Legacy-stream work or synchronisation while a blocking stream captures."""
    for capture in capturing():
        if not capture.stream.non_blocking:
            capture.invalid = f"{what} on the legacy stream"
            raise _errors.CUDARuntimeError(
                f"cudaErrorStreamCaptureImplicit: {what} on the legacy default stream while "
                f"blocking stream {capture.stream.ptr} is capturing")


Stream.null = Stream(null=True)
Stream.ptds = Stream(ptds=True)


def get_current_stream(device_id=-1):
    """The stream of the innermost ``with stream:``, else the one set by ``use()``, else
    ``Stream.null``."""
    if _state.stack:
        return _state.stack[-1]
    return _state.current or Stream.null


def stream_of(pointer: int):
    """The stream whose ``ptr`` is ``pointer`` (what NCCL and cuBLAS are handed)."""
    stream = _by_pointer.get(pointer)
    if stream is None:
        raise _errors.CUDARuntimeError(f"cudaErrorInvalidResourceHandle: no stream {pointer}")
    return stream


def issue(work, stream=None, cost: float = EAGER_US) -> None:
    """Run ``work()`` on ``stream`` (default: the current one), or record it when the stream
    captures."""
    stream = stream or get_current_stream()
    capture = _state.captures.get(stream.ptr)
    if capture is not None:
        capture.nodes.append((work, NODE_US))
        return
    if stream.ptr == 0 and _state.captures:
        _check_legacy("a kernel or copy")
    work()
    _clock[0] += cost


def device_synchronize() -> None:
    """``cudaDeviceSynchronize``: illegal while any stream captures."""
    for capture in capturing():
        _errors.illegal_during_capture(capture, "cudaDeviceSynchronize")


class Graph:
    """A captured CUDA graph (``cupy.cuda.Graph``; made only by ``Stream.end_capture``)."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError('currently this class cannot be initiated by the user and '
                                  'must be created via stream capture')

    @classmethod
    def _from_nodes(cls, nodes):
        graph = cls.__new__(cls)
        graph._nodes = list(nodes)
        return graph

    def launch(self, stream=None) -> None:
        """Run the recorded nodes in order on ``stream`` (default: the current stream)."""
        def replay():
            for work, _ in self._nodes:
                work()
        stream = stream or get_current_stream()
        issue(replay, stream, cost=GRAPH_LAUNCH_US + sum(cost for _, cost in self._nodes))

    def upload(self, stream=None) -> None:
        pass
