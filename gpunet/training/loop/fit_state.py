"""What a run needs to continue: :class:`FitState`, saved with every checkpoint ``fit`` writes
and restored by ``resume``, so an interrupted run repeats the uninterrupted one."""
from __future__ import annotations

from dataclasses import dataclass, field

from .history import History

META_KEY = "fit"  # the checkpoint's meta entry that holds the JSON part


@dataclass
class FitState:
    """``epoch``: finished epochs; ``history``: one record per epoch; ``base_lr``: the rate a
    schedule starts from; ``seed``: the run's seed (None: global generators run on);
    ``best_state``: the early-stopping best weights when they differ from the model's."""

    base_lr: float | None  # None: the optimizer's learning rate (fit fills it in)
    seed: int | None = None
    epoch: int = 0
    history: History = field(default_factory=lambda: History([]))
    best_state: dict | None = None

    def meta(self) -> dict:
        """The JSON part, stored in the checkpoint's meta under :data:`META_KEY`."""
        return {"history": self.history.records, "base_lr": self.base_lr, "seed": self.seed}

    def save_arguments(self) -> dict:
        """Keyword arguments of :func:`gpunet.save` that store this state."""
        return {"epoch": self.epoch, "best_state": self.best_state, META_KEY: self.meta()}

    @classmethod
    def from_checkpoint(cls, checkpoint, seed=None) -> FitState:
        """The state a checkpoint holds (``seed`` given here wins over the saved one)."""
        saved = checkpoint.meta.get(META_KEY) or {}
        return cls(base_lr=saved.get("base_lr", (checkpoint.optimizer_state or {}).get("lr")),
                   seed=saved.get("seed") if seed is None else seed,
                   epoch=checkpoint.epoch, history=History(saved.get("history", [])),
                   best_state=checkpoint.best_state)
