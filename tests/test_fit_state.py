"""Fit's resumable state is one object that a checkpoint saves and restores; one table of
optimizer defaults serves the CLI and the benchmark."""
import numpy as np

import gpunet as gn
from gpunet import optim
from gpunet.bench.variants import Workload
from gpunet.cli import build_parser
from gpunet.training.loop.fit_state import FitState
from gpunet.training.loop.history import History


def test_fit_state_round_trips_through_a_checkpoint(tmp_path):
    model = gn.Sequential(gn.Linear(3, 2))
    opt = gn.optim.SGD(model.parameters(), lr=0.3)
    best = {k: v + 1 for k, v in model.state_dict().items()}
    record = {"epoch": 2, "lr": 0.2, "train_loss": 0.5, "train_accuracy": None,
              "val_loss": None, "val_accuracy": None, "seconds": 1.0, "samples_per_s": 9.0}
    state = FitState(base_lr=0.3, seed=7, epoch=2, history=History([record, record]),
                     best_state=best)
    gn.save(tmp_path / "c.npz", model, opt, **state.save_arguments())
    back = FitState.from_checkpoint(gn.load(tmp_path / "c.npz"))
    assert (back.epoch, back.base_lr, back.seed) == (2, 0.3, 7)
    assert back.history.records == [record, record]
    assert back.best_state.keys() == best.keys()
    assert all(np.array_equal(back.best_state[k], best[k]) for k in best)
    assert FitState.from_checkpoint(gn.load(tmp_path / "c.npz"), seed=1).seed == 1


def test_a_plain_checkpoint_gives_a_fresh_state_at_its_epoch(tmp_path):
    model = gn.Sequential(gn.Linear(3, 2))
    gn.save(tmp_path / "c.npz", model, gn.optim.Adam(model.parameters(), lr=0.01), epoch=4)
    state = FitState.from_checkpoint(gn.load(tmp_path / "c.npz"))
    assert (state.epoch, state.base_lr, state.seed, state.best_state) == (4, 0.01, None, None)
    assert len(state.history) == 0


def test_one_table_of_optimizer_defaults():
    parser = build_parser(["train"])
    train_help = parser._subparsers._group_actions[0].choices["train"].format_help()
    for name, defaults in optim.DEFAULTS.items():
        assert name in optim.OPTIMIZERS
        assert Workload(optimizer=name).hyperparameters is defaults
        assert f"{defaults['lr']:g} for {name}" in " ".join(train_help.split())
