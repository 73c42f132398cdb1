"""Training: :func:`fit` (epochs of mini-batch updates, validation, early stopping,
learning-rate schedules, checkpoints); evaluation lives in ``evaluation.py``.

The data are moved to the model's device once. During an epoch the loss of every step is
written into a device array and read to the host only when a person looks at a number (a
progress-bar redraw, the end of the epoch), which is also where a NaN or infinite loss is
found and where device kernels report flagged errors.
"""
from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from ...backend import manual_seed
from ..run_files.checkpoint import Checkpoint, load, save
from .callbacks import Callbacks
from .early_stopping import EarlyStopping
from .epoch import NonFiniteLossError, train_epoch
from .fit_state import META_KEY, FitState
from .evaluation import EVAL_BATCH_SIZE, Evaluation, evaluate_on_device
from .inputs import (FloatInput, batching, checked, checked_sample_weight, pair,
                     warn_if_unscaled, weighted_batches)
from .history import History, format_epoch, format_models_epoch, model_record
from .orders import GroupBatches, check_order
from ...data.loader import DataLoader
from ...checks import check_positive_int
from ...nn.clip_grad import NormClipper
from ...nn.stack import models_of
from ..engine.step import graph_mode
from ..engine.step_runner import StepRunner
from ..engine.data_parallel import DataParallel


BATCH_SIZE = 128  # fit's default batch size

__all__ = ["NonFiniteLossError", "fit"]


def validation_rows(n, fraction, seed):
    """``(training rows, validation rows)`` of ``n`` samples: ``fraction`` held out by a
    permutation fixed by ``seed`` (0 if None), so a resumed run, or ``gpunet sweep``,
    validates on the same samples; a ValueError where either part would be empty."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val_split must be in [0, 1), got {fraction!r}")
    n_val = int(round(n * fraction))
    if not 1 <= n_val < n:
        raise ValueError(f"val_split={fraction} of {n} samples leaves {n_val} for "
                         f"validation and {n - n_val} for training; both need >= 1")
    order = np.random.default_rng(seed or 0).permutation(n)
    return order[n_val:], order[:n_val]


def _split(model, X, y, row_weights, fraction, seed):
    """Split a validation fraction off the device arrays ``(X, y)`` (and the training
    ``row_weights``, if any) by :func:`validation_rows`."""
    train_idx, val_idx = (model.backend.asarray(rows)
                          for rows in validation_rows(len(X), fraction, seed))
    kept = None if row_weights is None else row_weights[train_idx]
    return (X[train_idx], y[train_idx]), kept, (X[val_idx], y[val_idx])


def _epoch_seed(seed, epoch):
    """The seed of one epoch's shuffle and dropout: a function of ``(seed, epoch)`` only."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _tell_graph(runner, verbose, ended=False):
    """Print whether graph="auto" replays the steps as CUDA graphs, once it is known."""
    news = runner.graph_news(ended) if runner is not None and verbose else None
    if news:
        print(news, flush=True)


def _validate(model, val, loss_fn, batch_size, epoch, runner):
    """An epoch's validation result (through ``runner``'s static steps where they can run
    it); a NaN or infinite validation loss (the inputs being finite) raises
    NonFiniteLossError instead of being recorded (a stack's models stop one by one)."""
    if val is None:
        return Evaluation(None, None)
    if runner is not None and runner.can_evaluate(loss_fn, *val):
        result = Evaluation(*runner.evaluate(*val, batch_size))
    else:
        result = evaluate_on_device(model, *val, loss_fn, batch_size)
    if models_of(model) is None and result.loss is not None and not math.isfinite(result.loss):
        raise NonFiniteLossError(f"the validation loss became {result.loss} at epoch {epoch} "
                                 f"(the training loss was finite)", epoch, None)
    return result


def _new_history(models):
    """An empty History, or one per model of a stack."""
    return History([]) if models is None else [History([]) for _ in range(models)]


def _append(history, record, trained):
    """Add an epoch's record to the History (a stack's: model ``i``'s part to History ``i``
    for the models that ``trained``); returns the models' records (None: a stopped one)."""
    if not isinstance(history, list):
        history.append(record)
        return None
    records = [model_record(record, i) if trained[i] else None for i in range(len(history))]
    for model_history, model_part in zip(history, records):
        if model_part is not None:
            model_history.append(model_part)
    return records


def _check_some_finite(train_loss, trained, epoch):
    """A stack whose every model still training has a non-finite loss fails as a plain
    model does."""
    if isinstance(train_loss, np.ndarray) and not np.isfinite(train_loss[trained]).any():
        raise NonFiniteLossError(f"the training loss of every model still training became "
                                 f"NaN or infinite at epoch {epoch}", epoch, None)


def _stopped_news(stop, stopper, patience):
    """The line saying which models stopped after this epoch (None: none did)."""
    if not isinstance(stop, np.ndarray):
        return (f"early stopping: no improvement for {patience} epochs; best epoch "
                f"{int(stopper.best_epoch[0])}") if stop else None
    if not len(stop):
        return None
    diverged = [i for i in stop if stopper.diverged[i]]
    waited = [f"{i} (best epoch {int(stopper.best_epoch[i])})" for i in stop
              if not stopper.diverged[i]]
    parts = ([f"model{'s' if len(diverged) > 1 else ''} {', '.join(map(str, diverged))} "
              f"(a loss no longer finite)"] if diverged else []) + \
        ([f"model{'s' if len(waited) > 1 else ''} {', '.join(waited)}: no lower loss for "
          f"{patience} epoch{'s' if patience > 1 else ''}"] if waited else [])
    return f"stopped: {'; '.join(parts)}; {int(stopper.active.sum())} training"


def _resume(resume, model, optimizer, seed):
    """Load a checkpoint's weights and optimizer state; return its :class:`FitState`."""
    if not isinstance(resume, Checkpoint):
        resume = load(resume, device=model.backend)
    model.load_state_dict(resume.model.state_dict())
    if resume.optimizer_state is not None:
        optimizer.load_state_dict(resume.optimizer_state)
    state = FitState.from_checkpoint(resume, seed, models_of(model))
    if state.base_lr is None:
        state.base_lr = optimizer.lr
    return state


def fit(model, loss_fn, optimizer, train, val=None, *, val_split=0.0, epochs=10,
        batch_size=BATCH_SIZE, schedule=None, patience=None, seed=None, checkpoint=None,
        checkpoint_meta=None, resume=None, progress=True, verbose=True,
        on_epoch_end=None, on_step_end=None, clip_grad_norm=None, sample_weight=None,
        graph="auto", distributed=None, order="shared"):
    """Train ``model`` on ``train=(X, y)`` (or a :class:`~gpunet.DataLoader`, which brings
    its batch size, shuffling and drop_last) for ``epochs`` epochs; return a
    :class:`History` (a stack: a list of one History per model). ``optimizer`` must update
    this model's parameters.

    - ``val=(X, y)``, or ``val_split`` (a fraction of ``train`` held out with a permutation
      fixed by ``seed``): evaluated after every epoch.
    - ``batch_size``: samples per step (``None``: full batch). uint8 images are scaled to
      [0, 1] on the device, batch by batch; float inputs with a feature whose root mean
      square passes 10 get a warning (they look unscaled).
    - ``schedule(base_lr, epoch) -> lr`` (e.g. :class:`gpunet.schedules.CosineLR`) sets
      ``optimizer.lr`` before each epoch from the optimizer's learning rate at the start.
    - ``patience``: stop after that many epochs without a lower validation loss (training
      loss without validation), and end with the best epoch's weights.
    - ``seed``: call :func:`gpunet.manual_seed` at each epoch with a seed drawn from
      ``(seed, epoch)``, so an epoch's shuffle and dropout masks depend only on these (on one
      kind of device) and a resumed run repeats the uninterrupted one. Without it the
      global generators run on (a resumed run then shuffles differently).
    - ``checkpoint``: a path saved (atomically) after every epoch whose loss is finite;
      ``checkpoint_meta``: JSON-able values stored with it.
    - ``resume``: a :class:`Checkpoint` or path written by ``fit``: the weights, optimizer
      state, history, base learning rate, seed and early-stopping state continue from it,
      and training runs from its epoch up to ``epochs`` (a total, not a count to add).
    - ``clip_grad_norm``: each step, the gradients the optimizer updates are clipped to this
      total 2-norm (:func:`gpunet.clip_grad_norm_`) before the update (after the
      all-reduce when data-parallel): one pass over the flat gradient, inside the static or
      captured step too.
    - ``sample_weight``: one non-negative weight per sample of ``train``: each batch's loss
      is the weighted mean ``sum w_i l_i / sum w_i`` (``Loss`` with ``sample_weights``:
      CrossEntropyLoss, BCEWithLogitsLoss, MSELoss); validation is unweighted. The static
      step does not gather weights: weighted training runs the eager loop.
    - ``progress``: a progress bar on a terminal; ``verbose``: one line per epoch.
    - ``on_epoch_end(record)``, a function or a list of them, is called with each epoch's
      record (after its checkpoint is saved); ``on_step_end(epoch, step, loss)`` after each
      step (``loss``: the step's mean loss, a 0-d device array; ``float(loss)`` reads it,
      a host synchronisation). A callback that returns True or raises
      :class:`~gpunet.StopTraining` ends training after the current epoch; any other
      exception propagates carrying the History as ``exc.history`` (see ``callbacks.py``).
      With the static or captured step, ``on_step_end`` runs on the host between steps
      (replays); it may read the loss and set ``optimizer.lr``, which the next step uses.
    - ``graph``: ``"auto"`` runs a Sequential (or a stack) of Linear/ReLU/Flatten/Sigmoid/Tanh with
      ``CrossEntropyLoss`` (training and validation) through the static-buffer steps
      (``training/engine/step.py``); on the GPU it times the first steps uncaptured and as CUDA
      graph replays and keeps the faster for them, saying so in one line (``capture.py``);
      anything else runs eagerly; a recording that fails warns and runs uncaptured.
      ``"on"`` captures every step, validation included, and insists (an error where
      it cannot: the CPU, another loss or layer, a failed recording); ``"off"`` runs eagerly.
    - ``distributed``: a communicator from :func:`gpunet.distributed.init`: data-parallel
      training, one process per rank, each holding all the data. ``batch_size`` is the
      global batch (a multiple of the ranks), split evenly; every rank shuffles alike from
      ``seed`` and takes its slice of each global batch; the flat gradient is summed over
      the ranks (one all-reduce per step, inside the static or captured step too) so the
      update is the single-process update on the global batch. Metrics are over all ranks;
      only rank 0 prints and writes ``checkpoint``; ``on_epoch_end`` runs on every rank.

    A stack (``gn.stack``) trains its n models together, as n models trained alone on the
    same batches would be. ``order``: ``"shared"`` (one data order for all), ``"per_model"``
    (a shuffle per model) or ``"bootstrap"`` (a sample drawn with replacement per model and
    epoch: bagging). Schedules apply per model (to the optimizer's n rates). Early stopping
    is per model: a model stops after ``patience`` epochs without improvement, or when its
    loss is no longer finite; it takes back its best weights (with ``patience``) and is
    frozen (learning rate 0) while the others train on. Each model's History ends with its
    last epoch; ``on_epoch_end`` gets a list of the models' records (None for a stopped
    model), and ``on_step_end`` the n losses; the checkpoint holds the whole stack.

    NaN or inf in float inputs or targets (training or validation) raise ValueError naming
    the first bad row and column before the first batch. A NaN or infinite training or
    validation loss raises :class:`NonFiniteLossError` naming the epoch (and step); the
    checkpoint file then still holds the last good epoch (a stack: when every model still
    training reached one).
    """
    epochs = check_positive_int(epochs, "epochs")
    models = models_of(model)
    order = check_order(order, models)
    X, y = pair(train, "train")
    batch_size, shuffle, drop_last = batching(train, batch_size, BATCH_SIZE)
    if optimizer.backend is not model.backend:
        raise ValueError(f"the optimizer's parameters are on {optimizer.backend.name}, the "
                         f"model is on {model.backend.name}: create the optimizer after "
                         f"model.to(...)")
    optimizer.check_holds(model)
    clip = None if clip_grad_norm is None else NormClipper(optimizer.flat, clip_grad_norm)
    callbacks = Callbacks(on_epoch_end, on_step_end)
    if val is not None and val_split:
        raise ValueError("pass either val=(X, y) or val_split, not both")
    checkpoint_meta = dict(checkpoint_meta or {})
    if META_KEY in checkpoint_meta:
        raise ValueError(f"checkpoint_meta must not use the key {META_KEY!r} (fit's own state)")
    if distributed is not None and sample_weight is not None:
        raise ValueError("sample_weight is not supported with distributed training (each "
                         "rank would normalise by its own share of the weights)")
    if models is not None and (distributed is not None or sample_weight is not None):
        raise ValueError("a stack trains in one process and without sample weights: "
                         "distributed and sample_weight take a single model")
    parallel = None if distributed is None else DataParallel(distributed, model, optimizer)
    if parallel is not None and not parallel.is_root:
        checkpoint, verbose, progress = None, False, False
    state = (FitState(optimizer.lr, seed, history=_new_history(models)) if resume is None
             else _resume(resume, model, optimizer, seed))
    if parallel is not None:
        state.seed = parallel.shared_seed(state.seed)
        parallel.broadcast_state()
    if state.epoch >= epochs:
        raise ValueError(f"the checkpoint has already trained {state.epoch} epochs; pass "
                         f"epochs > {state.epoch} to train further")
    history, seed = state.history, state.seed
    callbacks.history = history
    X, y = checked(model, loss_fn, X, y, "train")  # before the split: rows as given
    row_weights = None if sample_weight is None else checked_sample_weight(
        model, loss_fn, sample_weight, len(X))
    warn_if_unscaled(X, "train")
    if val_split:
        (X, y), row_weights, val = _split(model, X, y, row_weights, val_split, seed)
    elif val is not None:
        val_X, val_y = pair(val, "val")
        val = checked(model, loss_fn, val_X, val_y, "val")
    loader = DataLoader(X, y if row_weights is None else model.backend.xp.arange(len(X)),
                        batch_size, shuffle=shuffle, drop_last=drop_last,
                        device=model.backend,
                        shard=None if parallel is None else (parallel.rank, parallel.size))
    if parallel is not None:
        parallel.shard = loader.shard
    groups = None if order == "shared" else models
    grouped = None if groups is None else GroupBatches(loader, groups, order == "bootstrap")
    mode, why = graph_mode(graph, model, loss_fn, X, y)
    if mode != "eager" and row_weights is not None:  # the static step gathers X and y only
        if graph == "on":
            raise ValueError("graph='on' cannot run sample weights; use graph='auto' or "
                             "'off'")
        mode, why = "eager", "sample weights are given"
    if mode != "eager" and (drop_last or not shuffle):  # the static step shuffles, keeps all
        if graph == "on":
            raise ValueError("graph='on' cannot run a DataLoader with shuffle=False or "
                             "drop_last=True; use graph='auto' or 'off'")
        mode, why = "eager", "the DataLoader has shuffle=False or drop_last=True"
    if verbose and model.backend.name == "gpu" and graph != "off" \
            and (mode, graph) != ("graph", "auto"):  # auto says so once it has timed the graph
        print(f"graph: {'on' if mode == 'graph' else 'off'} ({why})", flush=True)
    with contextlib.ExitStack() as stack:
        runner = None
        if mode != "eager":
            stream = model.backend.xp.cuda.Stream(non_blocking=True) if mode == "graph" \
                else None
            runner = StepRunner(model, optimizer, X, y, loader.batch_size, len(loader), stream,
                                shard=loader.shard,
                                sync=None if parallel is None else parallel.hook,
                                strict=graph == "on",
                                agree=None if parallel is None else parallel.agree, clip=clip,
                                loss_fn=loss_fn, groups=groups,
                                bootstrap=order == "bootstrap")
            stack.callback(runner.close)
            if runner.stream is not None:  # every op of the run ordered with the replays
                stack.enter_context(runner.stream)
        stopper = EarlyStopping(patience, model, state.histories(), state.best_state)
        to_input = FloatInput(model)
        eval_batch = max(loader.batch_size, EVAL_BATCH_SIZE)

        def save_checkpoint():
            if checkpoint is not None:
                save(checkpoint, model, optimizer, **state.save_arguments(), **checkpoint_meta)

        for index in range(state.epoch, epochs):
            if seed is not None:
                manual_seed(_epoch_seed(seed, index))
            if schedule is not None:
                optimizer.lr = stopper.frozen(schedule(state.base_lr, index))
            trained = stopper.active.copy()
            started = time.perf_counter()
            # a diverging run is reported by NonFiniteLossError, not by NumPy's warnings
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                try:
                    train_loss, train_accuracy = train_epoch(
                        model, loss_fn, optimizer, loader, to_input, index + 1, epochs,
                        progress=progress, runner=runner, parallel=parallel,
                        callbacks=callbacks, clip=clip,
                        batches=grouped if row_weights is None
                        else weighted_batches(loader, y, row_weights))
                    _check_some_finite(train_loss, trained, index + 1)
                    train_seconds = time.perf_counter() - started
                    result = _validate(model, val, loss_fn, eval_batch, index + 1, runner)
                except NonFiniteLossError as exc:
                    kept = (f"; the checkpoint {checkpoint} keeps epoch {state.epoch}"
                            if checkpoint is not None and state.epoch else "")
                    raise NonFiniteLossError(f"{exc}{kept}. Try a lower learning rate.",
                                             exc.epoch, exc.step) from None
            record = {"epoch": index + 1, "lr": optimizer.lr, "train_loss": train_loss,
                      "train_accuracy": train_accuracy, "val_loss": result.loss,
                      "val_accuracy": result.accuracy,
                      "seconds": time.perf_counter() - started,
                      "samples_per_s": loader.num_samples / train_seconds}
            records = _append(history, record, trained)
            _tell_graph(runner, verbose)
            state.epoch = index + 1
            stop = stopper.update(model, record)
            if models is not None:  # stopped models keep their weights from here on
                optimizer.lr = stopper.frozen(optimizer.lr)
            state.best_state = stopper.state_to_save(state.epoch)
            save_checkpoint()
            if verbose:
                print(format_epoch(record, epochs) if models is None
                      else format_models_epoch(record, epochs, trained), flush=True)
            asked = callbacks.epoch_done(record if models is None else records)
            news = [_stopped_news(stop, stopper, patience),
                    asked and f"stopped by a callback after epoch {state.epoch}"]
            for line in news if verbose else ():
                if line:
                    print(line, flush=True)
            if asked or not stopper.active.any():
                break
        _tell_graph(runner, verbose, ended=True)
        if stopper.restore(model, state.epoch):
            state.best_state = stopper.best_state
            save_checkpoint()
        return history
