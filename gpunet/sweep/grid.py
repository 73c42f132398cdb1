"""The grid of ``gpunet sweep``: every combination of learning rate, weight decay and seed,
trained as one stack (``gn.stack``) through ``gn.fit``, then each model's validation result,
and the time the same fits would take one by one (one model's epoch, timed, times the epochs
all the models trained)."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np

from .. import optim
from ..cli_setup import build_model, make_schedule
from ..nn.activations import Activation
from ..nn.layers import Dropout, Sequential
from ..nn.losses import CrossEntropyLoss
from ..nn.stack import stack
from ..training.loop.evaluation import Evaluation, evaluate
from ..training.loop.fit import fit


@dataclass
class Settings:
    """What every model of the grid shares: architecture, optimizer and training."""

    hidden: list
    activation: str
    optimizer: str
    momentum: float | None
    batch_size: int
    epochs: int
    schedule: str
    patience: int | None
    seed: int
    order: str
    dropout: float = 0.0


def configurations(lrs, weight_decays, seeds):
    """One dict per model: every ``(lr, weight_decay, seed)`` combination, in that order
    (the seed varies fastest)."""
    return [{"lr": lr, "weight_decay": wd, "seed": seed}
            for lr, wd, seed in itertools.product(lrs, weight_decays, seeds)]


@dataclass
class SweepResult:
    """The trained stack, each model's configuration and History, its validation result
    with the weights it kept (``val``: per-model arrays), the stack's training time and
    the estimate of the same fits one by one."""

    configurations: list
    stack: object
    histories: list
    val: Evaluation
    seconds: float
    one_by_one_seconds: float
    epoch_seconds: float

    def ranking(self):
        """Model indices, best first: by validation accuracy, then validation loss."""
        accuracy = np.nan_to_num(self.val.accuracy, nan=-1.0)
        loss = np.nan_to_num(self.val.loss, nan=np.inf)
        return [int(i) for i in np.lexsort((loss, -accuracy))]


def _optimizer(settings, parameters, lr, weight_decay):
    kwargs = {"lr": lr, "weight_decay": weight_decay}
    if settings.optimizer == "sgd":
        kwargs["momentum"] = settings.momentum
    return optim.OPTIMIZERS[settings.optimizer](parameters, **kwargs)


def _fit(model, optimizer, train, val, settings, *, epochs, order, progress, verbose):
    return fit(model, CrossEntropyLoss(), optimizer, train, val=val, epochs=epochs,
               batch_size=settings.batch_size,
               schedule=make_schedule(settings.schedule, settings.epochs),
               patience=settings.patience, seed=settings.seed, progress=progress,
               verbose=verbose, order=order)


def train_grid(train, val, classes, grid, settings, backend, *, progress=True,
               verbose=True) -> SweepResult:
    """Train the models of ``grid`` (from :func:`configurations`) on ``train`` as one stack
    on ``backend``, validating on ``val``; then time one model's epoch alone."""
    template = _architecture(int(np.prod(train[0].shape[1:])), classes, settings)
    models = stack(template.to(backend), len(grid), seeds=[c["seed"] for c in grid])
    optimizer = _optimizer(settings, models.parameters(), [c["lr"] for c in grid],
                           [c["weight_decay"] for c in grid])
    started = time.perf_counter()
    histories = _fit(models, optimizer, train, val, settings, epochs=settings.epochs,
                     order=settings.order, progress=progress, verbose=verbose)
    seconds = time.perf_counter() - started
    kept = evaluate(models, val[0], val[1], CrossEntropyLoss())
    epoch_seconds = _one_model_epoch(template, train, val, grid[0], settings)
    trained_epochs = sum(len(h) for h in histories)
    return SweepResult(grid, models, histories, kept, seconds, epoch_seconds * trained_epochs,
                       epoch_seconds)


def _architecture(inputs, classes, settings):
    """``gpunet train``'s network, with a Dropout after each hidden activation when
    ``settings.dropout`` is set (each model of the stack draws its own masks)."""
    model = build_model(inputs, settings.hidden, settings.activation, classes)
    if not settings.dropout:
        return model
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, Activation):
            layers.append(Dropout(settings.dropout))
    return Sequential(*layers)


def _one_model_epoch(template, train, val, configuration, settings):
    """Seconds of one epoch (training and validation) of one model of the grid alone."""
    model = stack(template, 1, seeds=[configuration["seed"]])[0]
    optimizer = _optimizer(settings, model.parameters(), configuration["lr"],
                           configuration["weight_decay"])
    history = _fit(model, optimizer, train, val, settings, epochs=1, order="shared",
                   progress=False, verbose=False)
    return history.records[0]["seconds"]
