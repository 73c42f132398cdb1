"""The callbacks of ``fit``: functions called after every epoch (``on_epoch_end(record)``) and
after every step (``on_step_end(epoch, step, loss)``), how they stop training, and what
``fit`` keeps when one raises.

- Stopping: a callback that returns ``True`` or raises :class:`StopTraining` ends training
  after the current epoch (Keras's ``model.stop_training = True``): the epoch finishes, is
  recorded and checkpointed, early stopping's best weights are restored, and ``fit`` returns
  the History. From ``on_step_end`` the request is honoured at the end of its epoch, so an
  epoch is always whole (a resumed run repeats it exactly).
- Failing: any other exception raised by a callback propagates with the History of the
  finished epochs as its ``history`` attribute (and a note saying what the checkpoint keeps);
  the checkpoint is written before the epoch's callbacks run, and every epoch callback is
  called even when an earlier one raised (a callback that writes the metrics files still
  writes them), then the first exception is raised.
"""
from __future__ import annotations

import numpy as np


class StopTraining(Exception):
    """Raise in a callback of ``fit`` to stop training after the current epoch (``fit``
    then returns its History as usual)."""


def _callables(value, name):
    """``value`` (None, a callable or a list of them) as a tuple of callables."""
    if value is None:
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not callable(item):
            raise TypeError(f"{name} must be a function or a list of functions, got "
                            f"{type(item).__name__}")
    return tuple(items)


def _asks_to_stop(result) -> bool:
    """A callback's return value: ``True`` (Python's or NumPy's) asks to stop; anything
    else (None, numbers written by ``file.write``...) is ignored."""
    return result is True or (isinstance(result, np.bool_) and bool(result))


class Callbacks:
    """The callbacks of one ``fit`` call; ``history``: the History it returns (set once
    known)."""

    def __init__(self, on_epoch_end, on_step_end, history=None):
        self.epoch_end = _callables(on_epoch_end, "on_epoch_end")
        self.step_end = _callables(on_step_end, "on_step_end")
        self.history = history
        self.stop_requested = False  # by a step callback, honoured at the end of the epoch

    @property
    def per_step(self) -> bool:
        """Whether any step callback is set (without one, the steps run untouched)."""
        return bool(self.step_end)

    def step_done(self, epoch, step, loss) -> None:
        """Call every ``on_step_end(epoch, step, loss)`` (epoch and step counted from 1)."""
        for callback in self.step_end:
            try:
                self.stop_requested |= _asks_to_stop(callback(epoch, step, loss))
            except StopTraining:
                self.stop_requested = True
            except Exception as exc:
                raise self._carrying(exc, f"on_step_end raised at epoch {epoch}, step {step}")

    def epoch_done(self, record) -> bool:
        """Call every ``on_epoch_end(record)``; True when training should stop now."""
        stop, errors = self.stop_requested, []
        for callback in self.epoch_end:
            try:
                stop |= _asks_to_stop(callback(record))
            except StopTraining:
                stop = True
            except Exception as exc:
                errors.append(exc)
        if errors:
            first = errors[0]
            for later in errors[1:]:
                first.add_note(f"another on_epoch_end callback raised too: "
                               f"{type(later).__name__}: {later}")
            raise self._carrying(first, f"on_epoch_end raised after epoch {record['epoch']}")
        return stop

    def _carrying(self, exc, what):
        """``exc`` with the History attached and a note saying so."""
        exc.history = self.history
        exc.add_note(f"fit stopped: {what}; the History of the {len(self.history)} finished "
                     f"epochs is this exception's .history (the checkpoint, if any, keeps the "
                     f"last of them)")
        return exc
