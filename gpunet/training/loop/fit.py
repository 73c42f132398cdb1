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

from ...backend import manual_seed, to_numpy
from ..run_files.checkpoint import Checkpoint, load, save
from .fit_state import META_KEY, FitState
from .evaluation import EVAL_BATCH_SIZE, Evaluation, evaluate_on_device
from .inputs import FloatInput, batching, checked, pair, warn_if_unscaled
from .history import History, format_epoch, format_numbers
from ...data.loader import DataLoader
from ...checks import check_positive_int
from .progress import ProgressBar, format_rate
from ...nn.boundary import inside
from ..engine.step import graph_mode
from ..engine.step_runner import StepRunner
from ..engine.data_parallel import DataParallel


BATCH_SIZE = 128  # fit's default batch size


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite (``epoch``, ``step``)."""

    def __init__(self, message, epoch, step):
        super().__init__(message)
        self.epoch = epoch
        self.step = step


def _split(model, X, y, fraction, seed):
    """Split a validation fraction off the device arrays ``(X, y)`` with a permutation
    fixed by ``seed`` (0 if None), so a resumed run validates on the same samples."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val_split must be in [0, 1), got {fraction!r}")
    n_val = int(round(len(X) * fraction))
    if not 1 <= n_val < len(X):
        raise ValueError(f"val_split={fraction} of {len(X)} samples leaves {n_val} for "
                         f"validation and {len(X) - n_val} for training; both need >= 1")
    order = model.backend.asarray(np.random.default_rng(seed or 0).permutation(len(X)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    return (X[train_idx], y[train_idx]), (X[val_idx], y[val_idx])


def _epoch_seed(seed, epoch):
    """The seed of one epoch's shuffle and dropout: a function of ``(seed, epoch)`` only."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class _EpochMeter:
    """Per-step losses and correct counts kept on the device (recorded by the eager loop, or
    by the static step into ``runner``'s buffers), read to the host in chunks."""

    def __init__(self, loader, loss_fn, epoch, runner=None):
        xp = loader.backend.xp
        self.backend = loader.backend
        self.loss_fn = loss_fn
        self.epoch = epoch
        steps = len(loader)
        self.counts_correct = hasattr(loss_fn, "last_correct")
        if runner is not None:
            self.losses, self.correct = runner.epoch.losses, runner.epoch.hits
        else:
            self.losses = xp.zeros(steps, dtype=np.float64)
            self.correct = xp.zeros(steps, dtype=np.int64) if self.counts_correct else None
        self.sizes = loader.step_rows()  # this rank's rows, when data-parallel
        self.read_steps = 0
        self.loss_sum = 0.0
        self.correct_sum = 0

    def record(self, step, loss):
        self.losses[step] = loss
        if self.counts_correct:
            self.correct[step] = self.loss_fn.last_correct

    def read(self, done):
        """Bring steps ``[read_steps, done)`` to the host; raise on a non-finite loss."""
        start, self.read_steps = self.read_steps, done
        self.backend.ops.check_errors()
        chunk = to_numpy(self.losses[start:done])
        bad = np.flatnonzero(~np.isfinite(chunk))
        if bad.size:
            step = start + int(bad[0]) + 1
            raise NonFiniteLossError(
                f"the training loss became {chunk[bad[0]]} at epoch {self.epoch}, step {step} "
                f"of {len(self.sizes)}", self.epoch, step)
        self.loss_sum += float(chunk @ self.sizes[start:done])
        if self.counts_correct:
            self.correct_sum += int(to_numpy(self.correct[start:done]).sum())

    def summary(self, parallel=None):
        """``(mean loss, accuracy)`` of the steps read (over every rank with ``parallel``)."""
        loss_sum, correct_sum = self.loss_sum, self.correct_sum
        seen = int(self.sizes[:self.read_steps].sum())
        if parallel is not None:
            loss_sum, correct_sum, seen = parallel.reduce(loss_sum, correct_sum, seen)
        accuracy = correct_sum / seen if self.counts_correct else None
        return loss_sum / seen, accuracy


def _eager_steps(model, loss_fn, optimizer, loader, to_input, meter, syncs):
    """The steps of an epoch as separate calls; yields each step's index when done.
    ``syncs``: per step, the gradient all-reduce of data parallelism (or None)."""
    for step, (xb, yb) in enumerate(loader):
        loss = loss_fn(model(to_input(xb)), yb)
        model.backward(loss_fn.backward(), input_grad=False)
        if syncs is not None:
            syncs[step]()
        optimizer.step()
        meter.record(step, loss)
        yield step


def _static_steps(runner):
    """The steps of an epoch through the static (on the GPU: captured) step."""
    runner.start_epoch()
    for step in range(runner.count):
        runner.run(step)
        yield step


def _train_epoch(model, loss_fn, optimizer, loader, to_input, epoch, epochs, progress,
                 runner, parallel):
    meter = _EpochMeter(loader, loss_fn, epoch, runner)
    bar = ProgressBar(len(loader), f"epoch {epoch}/{epochs} ", enabled=progress)
    started = time.perf_counter()
    model.train()
    syncs = None if parallel is None else parallel.eager_hooks()
    ranks = 1 if parallel is None else parallel.size  # the bar shows the job's rate
    steps = (_static_steps(runner) if runner is not None
             else _eager_steps(model, loss_fn, optimizer, loader, to_input, meter, syncs))
    try:
        with inside():  # the library's own calls: buffers reused, no copies handed out
            for step in steps:
                if bar.due():
                    meter.read(step + 1)
                    loss_mean, accuracy = meter.summary()
                    rate = ranks * meter.sizes[:step + 1].sum() / (time.perf_counter()
                                                                   - started)
                    bar.update(step + 1, **format_numbers(loss_mean, accuracy),
                               rate=format_rate(rate))
        meter.read(len(loader))
    finally:
        bar.close()
    return meter.summary(parallel)


def _tell_graph(runner, verbose, ended=False):
    """Print whether graph="auto" replays the steps as CUDA graphs, once it is known."""
    news = runner.graph_news(ended) if runner is not None and verbose else None
    if news:
        print(news, flush=True)


def _validate(model, val, loss_fn, batch_size, epoch, runner):
    """An epoch's validation result (through ``runner``'s static steps where they can run
    it); a NaN or infinite validation loss (the inputs being finite) raises
    NonFiniteLossError instead of being recorded."""
    if val is None:
        return Evaluation(None, None)
    if runner is not None and runner.can_evaluate(loss_fn, *val):
        result = Evaluation(*runner.evaluate(*val, batch_size))
    else:
        result = evaluate_on_device(model, *val, loss_fn, batch_size)
    if result.loss is not None and not math.isfinite(result.loss):
        raise NonFiniteLossError(f"the validation loss became {result.loss} at epoch {epoch} "
                                 f"(the training loss was finite)", epoch, None)
    return result


class _EarlyStopping:
    """Track the best epoch by the monitored loss (validation, else training) and, with a
    ``patience``, keep a copy of its weights."""

    def __init__(self, patience, model, history, saved_best_state):
        self.patience = None if patience is None else check_positive_int(patience, "patience")
        self.best_epoch, self.best_loss, self.best_state = 0, math.inf, None
        losses = [_monitored(r) for r in history]
        if not losses or self.patience is None:
            return
        best = int(np.argmin(losses)) if saved_best_state is not None else -1
        # without saved best weights, the current ones (the last epoch's) count as the best
        self.best_epoch, self.best_loss = history.records[best]["epoch"], losses[best]
        self.best_state = model.state_dict() if saved_best_state is None else saved_best_state

    def update(self, model, record):
        """Note a finished epoch; True when ``patience`` epochs passed without improvement."""
        loss = _monitored(record)
        if loss < self.best_loss:
            self.best_epoch, self.best_loss = record["epoch"], loss
            if self.patience is not None:
                self.best_state = model.state_dict()
        return self.patience is not None and record["epoch"] - self.best_epoch >= self.patience

    def state_to_save(self, epoch):
        """The best weights when they differ from the model's weights after ``epoch``."""
        return self.best_state if self.best_epoch != epoch else None

    def restore(self, model, epoch):
        """Load the best weights unless the model already holds them; True if it did."""
        if self.state_to_save(epoch) is None:
            return False
        model.load_state_dict(self.best_state)
        return True


def _monitored(record):
    return record["val_loss"] if record["val_loss"] is not None else record["train_loss"]


def _resume(resume, model, optimizer, seed):
    """Load a checkpoint's weights and optimizer state; return its :class:`FitState`."""
    if not isinstance(resume, Checkpoint):
        resume = load(resume, device=model.backend)
    model.load_state_dict(resume.model.state_dict())
    if resume.optimizer_state is not None:
        optimizer.load_state_dict(resume.optimizer_state)
    state = FitState.from_checkpoint(resume, seed)
    if state.base_lr is None:
        state.base_lr = optimizer.lr
    return state


def fit(model, loss_fn, optimizer, train, val=None, *, val_split=0.0, epochs=10,
        batch_size=BATCH_SIZE, schedule=None, patience=None, seed=None, checkpoint=None,
        checkpoint_meta=None, resume=None, progress=True, verbose=True,
        on_epoch_end=None, graph="auto", distributed=None) -> History:
    """Train ``model`` on ``train=(X, y)`` (or a :class:`~gpunet.DataLoader`, which brings
    its batch size, shuffling and drop_last) for ``epochs`` epochs; return a
    :class:`History`. ``optimizer`` must update this model's parameters.

    - ``val=(X, y)``, or ``val_split`` (a fraction of ``train`` held out with a permutation
      fixed by ``seed``): evaluated after every epoch.
    - ``batch_size``: samples per step (``None``: full batch). uint8 images are scaled to
      [0, 1] on the device, batch by batch; float inputs beyond +-10 get a warning (they
      look unscaled).
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
    - ``progress``: a progress bar on a terminal; ``verbose``: one line per epoch;
      ``on_epoch_end(record)`` is called with each epoch's record.
    - ``graph``: ``"auto"`` runs a Sequential of Linear/ReLU/Flatten/Sigmoid/Tanh with
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

    NaN or inf in float inputs or targets (training or validation) raise ValueError naming
    the first bad row and column before the first batch. A NaN or infinite training or
    validation loss raises :class:`NonFiniteLossError` naming the epoch (and step); the
    checkpoint file then still holds the last good epoch.
    """
    epochs = check_positive_int(epochs, "epochs")
    X, y = pair(train, "train")
    batch_size, shuffle, drop_last = batching(train, batch_size, BATCH_SIZE)
    if optimizer.backend is not model.backend:
        raise ValueError(f"the optimizer's parameters are on {optimizer.backend.name}, the "
                         f"model is on {model.backend.name}: create the optimizer after "
                         f"model.to(...)")
    optimizer.check_holds(model)
    if val is not None and val_split:
        raise ValueError("pass either val=(X, y) or val_split, not both")
    checkpoint_meta = dict(checkpoint_meta or {})
    if META_KEY in checkpoint_meta:
        raise ValueError(f"checkpoint_meta must not use the key {META_KEY!r} (fit's own state)")
    parallel = None if distributed is None else DataParallel(distributed, model, optimizer)
    if parallel is not None and not parallel.is_root:
        checkpoint, verbose, progress = None, False, False
    state = (FitState(optimizer.lr, seed) if resume is None
             else _resume(resume, model, optimizer, seed))
    if parallel is not None:
        state.seed = parallel.shared_seed(state.seed)
        parallel.broadcast_state()
    if state.epoch >= epochs:
        raise ValueError(f"the checkpoint has already trained {state.epoch} epochs; pass "
                         f"epochs > {state.epoch} to train further")
    history, seed = state.history, state.seed
    X, y = checked(model, loss_fn, X, y, "train")  # before the split: rows as given
    warn_if_unscaled(X, "train")
    if val_split:
        (X, y), val = _split(model, X, y, val_split, seed)
    elif val is not None:
        val_X, val_y = pair(val, "val")
        val = checked(model, loss_fn, val_X, val_y, "val")
    loader = DataLoader(X, y, batch_size, shuffle=shuffle, drop_last=drop_last,
                        device=model.backend,
                        shard=None if parallel is None else (parallel.rank, parallel.size))
    if parallel is not None:
        parallel.shard = loader.shard
    mode, why = graph_mode(graph, model, loss_fn, X, y)
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
                                agree=None if parallel is None else parallel.agree)
            stack.callback(runner.close)
            if runner.stream is not None:  # every op of the run ordered with the replays
                stack.enter_context(runner.stream)
        stopper = _EarlyStopping(patience, model, history, state.best_state)
        to_input = FloatInput(model)
        eval_batch = max(loader.batch_size, EVAL_BATCH_SIZE)

        def save_checkpoint():
            if checkpoint is not None:
                save(checkpoint, model, optimizer, **state.save_arguments(), **checkpoint_meta)

        for index in range(state.epoch, epochs):
            if seed is not None:
                manual_seed(_epoch_seed(seed, index))
            if schedule is not None:
                optimizer.lr = schedule(state.base_lr, index)
            started = time.perf_counter()
            # a diverging run is reported by NonFiniteLossError, not by NumPy's warnings
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                try:
                    train_loss, train_accuracy = _train_epoch(
                        model, loss_fn, optimizer, loader, to_input, index + 1, epochs, progress,
                        runner, parallel)
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
            history.append(record)
            _tell_graph(runner, verbose)
            state.epoch = index + 1
            stop = stopper.update(model, record)
            state.best_state = stopper.state_to_save(state.epoch)
            save_checkpoint()
            if verbose:
                print(format_epoch(record, epochs), flush=True)
            if on_epoch_end is not None:
                on_epoch_end(record)
            if stop:
                if verbose:
                    print(f"early stopping: no improvement for {patience} epochs; best epoch "
                          f"{stopper.best_epoch}", flush=True)
                break
        _tell_graph(runner, verbose, ended=True)
        if stopper.restore(model, state.epoch):
            state.best_state = stopper.best_state
            save_checkpoint()
        return history
