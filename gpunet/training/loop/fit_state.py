"""What a run needs to continue: :class:`FitState`, saved with every checkpoint ``fit`` writes
and restored by ``resume``, so an interrupted run repeats the uninterrupted one."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .history import History

META_KEY = "fit"  # the checkpoint's meta entry that holds the JSON part


@dataclass
class FitState:
    """``epoch``: finished epochs; ``history``: one record per epoch (a stack: a list of one
    History per model); ``base_lr``: the rate a schedule starts from (a stack: one per
    model); ``seed``: the run's seed (None: global generators run on); ``best_state``: the
    early-stopping best weights when they differ from the model's."""

    base_lr: float | np.ndarray | None  # None: the optimizer's learning rate (fit fills it)
    seed: int | None = None
    epoch: int = 0
    history: History | list = field(default_factory=lambda: History([]))
    best_state: dict | None = None

    def histories(self) -> list:
        """One History per model (a plain model's alone in a list)."""
        return self.history if isinstance(self.history, list) else [self.history]

    def meta(self) -> dict:
        """The JSON part, stored in the checkpoint's meta under :data:`META_KEY`."""
        history = ([h.records for h in self.history] if isinstance(self.history, list)
                   else self.history.records)
        base_lr = self.base_lr.tolist() if isinstance(self.base_lr, np.ndarray) else self.base_lr
        return {"history": history, "base_lr": base_lr, "seed": self.seed}

    def save_arguments(self) -> dict:
        """Keyword arguments of :func:`gpunet.save` that store this state."""
        return {"epoch": self.epoch, "best_state": self.best_state, META_KEY: self.meta()}

    @classmethod
    def from_checkpoint(cls, checkpoint, seed=None, models=None) -> FitState:
        """The state a checkpoint holds (``seed`` given here wins over the saved one);
        ``models``: the number of models of a stack (None: a plain model)."""
        saved = checkpoint.meta.get(META_KEY) or {}
        base_lr = saved.get("base_lr", (checkpoint.optimizer_state or {}).get("lr"))
        records = saved.get("history", [])
        if models is None:
            history: History | list = History(records)
        else:
            history = [History(r) for r in records] or [History() for _ in range(models)]
            base_lr = None if base_lr is None else np.broadcast_to(
                np.asarray(base_lr, dtype=np.float64), (models,)).copy()
        return cls(base_lr=base_lr, seed=saved.get("seed") if seed is None else seed,
                   epoch=checkpoint.epoch, history=history, best_state=checkpoint.best_state)
