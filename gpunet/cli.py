"""``gpunet train | eval | bench``: the command line (also ``python -m gpunet``).

``gpunet train`` trains the lecture's 784-512-512-10 ReLU MLP on Fashion-MNIST with defaults
that reach about 90% test accuracy, printing progress and one line per epoch; ``--out DIR``
(claimed for the run: see ``runclaim.py``) receives ``checkpoint.npz`` and ``metrics.csv`` /
``metrics.json`` after every epoch, and ``curves.png`` at the end. ``gpunet eval CHECKPOINT``
reports test accuracy and a confusion matrix. Ctrl-C and SIGTERM stop a run and say what
the checkpoint keeps (exit 130 and 143).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import numpy as np

from . import backend as backend_module
from . import distributed, optim
from .backend import BackendUnavailable, get_backend, manual_seed, to_numpy
from .checks import CommandParser, argparse_type, check_int, check_number
from .training.run_files.checkpoint import DEFAULT_LIMITS, CheckpointError, LoadLimits, load, saved_epoch
from .data.datasets import DatasetError
from .training.loop.evaluation import confusion_matrix, evaluate, format_confusion, predict
from .training.run_files.interrupts import Terminated, sigterm_as_interrupt
from .nn.losses import CrossEntropyLoss
from .training.run_files.run_output import MetricsWriter
from .training.run_files.runclaim import FolderInUse, RunClaim
from .training.loop.fit import NonFiniteLossError, fit
from .training.loop.fit_state import FitState
from .training.engine.step import GRAPH_MODES, graph_mode
from .demo.cli import add_parser as add_demo_parser
from .cli_setup import (ACTIVATIONS, IMAGE_DATASETS, TOY_DATASETS, TOY_SIZES,  # noqa: F401
                        UsageError, build_model, load_data, make_schedule)
from .cli_setup import describe_model as _describe_model, make_optimizer as _make_optimizer

__all__ = ["build_parser", "confusion_matrix", "format_confusion", "main"]


#: What defines a run: stored in the checkpoint, restored by ``--resume``.
RUN_DEFAULTS = {"dataset": "fashion-mnist", "hidden": [512, 512], "activation": "relu",
                "optimizer": "sgd", "lr": None, "momentum": None, "weight_decay": 0.0,
                "batch_size": None, "val_split": 0.1, "schedule": "cosine", "patience": None,
                "seed": 0, "clip_grad_norm": None}
DEFAULT_EPOCHS = {"fashion-mnist": 20, "mnist": 20, "xor": 100, "spirals": 100}
DEFAULT_BATCH_SIZE = {"fashion-mnist": 128, "mnist": 128, "xor": 32, "spirals": 32}
CHECKPOINT_NAME = "checkpoint.npz"


# -- argument types ---------------------------------------------------------------------
positive_int = argparse_type(check_int, int, minimum=1)
non_negative_int = argparse_type(check_int, int, minimum=0)
positive_float = argparse_type(check_number, low=0, low_open=True)
non_negative_float = argparse_type(check_number, low=0)
fraction = argparse_type(check_number, low=0, high=1, high_open=True)


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The parser of ``gpunet``; the ``bench`` options are loaded only when ``argv`` runs
    ``bench``."""
    parser = argparse.ArgumentParser(prog="gpunet", description="Train and evaluate MLPs "
                                     "on the GPU (CuPy) or the CPU (NumPy).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=CommandParser)

    train = commands.add_parser("train", help="train an MLP (default: 784-512-512-10 ReLU "
                                "on Fashion-MNIST)")
    train.add_argument("--dataset", choices=IMAGE_DATASETS + tuple(TOY_DATASETS),
                       help="training data (default: fashion-mnist)")
    train.add_argument("--hidden", type=positive_int, nargs="+", metavar="WIDTH",
                       help="hidden layer widths (default: 512 512)")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS),
                       help="hidden activation (default: relu)")
    train.add_argument("--epochs", type=positive_int,
                       help="total epochs (default: 20 for images, 100 for xor/spirals); "
                            "with --resume, the total to reach")
    train.add_argument("--batch-size", type=positive_int, help="samples per step "
                       "(default: 128 for images, 32 for xor/spirals)")
    train.add_argument("--optimizer", choices=sorted(optim.OPTIMIZERS), help="default: sgd")
    lr_defaults = ", ".join(f"{d['lr']:g} for {name}" for name, d in optim.DEFAULTS.items())
    train.add_argument("--lr", type=positive_float,
                       help=f"initial learning rate (default: {lr_defaults})")
    train.add_argument("--momentum", type=fraction, help=f"SGD momentum (default: "
                       f"{optim.DEFAULTS['sgd']['momentum']:g})")
    train.add_argument("--weight-decay", type=non_negative_float, help="default: 0")
    train.add_argument("--schedule", choices=("cosine", "step", "none"),
                       help="learning-rate schedule per epoch: cosine to 0 over the epochs, "
                            "or step (x0.1 every third of them) (default: cosine)")
    train.add_argument("--val-split", type=fraction,
                       help="fraction of the training set held out for validation "
                            "(default: 0.1)")
    train.add_argument("--patience", type=positive_int,
                       help="stop after this many epochs without a lower validation loss "
                            "and keep the best weights (default: off)")
    train.add_argument("--clip-grad-norm", type=positive_float, metavar="MAX",
                       help="clip the gradients to this total 2-norm each step, as "
                            "torch.nn.utils.clip_grad_norm_ (default: off)")
    train.add_argument("--seed", type=non_negative_int,
                       help="seed for initialisation, split and shuffling (default: 0)")
    train.add_argument("--out", metavar="DIR", help="output folder for the checkpoint and "
                       "metrics (default: runs/DATASET-TIMESTAMP)")
    train.add_argument("--resume", metavar="CHECKPOINT",
                       help="continue the run saved in CHECKPOINT (its settings are reused)")
    _add_common(train)
    train.add_argument("--graph", choices=GRAPH_MODES, default="auto",
                       help="capture the training step as a CUDA graph: auto (on the GPU "
                            "where the model allows it and the timed first steps show it "
                            "faster), on (an error where it cannot), off (default: auto)")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel training, one process per rank under an MPI "
                            "launcher (mpiexec -n 2 gpunet train --distributed ...): "
                            "--batch-size is the global batch, split evenly across the "
                            "ranks; rank 0 prints and writes the output folder")
    train.add_argument("--no-progress", action="store_true",
                       help="no progress bar (the per-epoch lines stay)")
    train.set_defaults(func=run_train)

    evaluate_cmd = commands.add_parser("eval", help="test accuracy and confusion matrix of "
                                       "a checkpoint written by gpunet train")
    evaluate_cmd.add_argument("checkpoint", metavar="CHECKPOINT",
                              help="a checkpoint.npz written by gpunet train")
    evaluate_cmd.add_argument("--batch-size", type=positive_int, default=1024,
                              help="samples per forward pass (default: 1024)")
    _add_common(evaluate_cmd)
    evaluate_cmd.set_defaults(func=run_eval)

    if importlib.util.find_spec("gpunet.bench") is not None:
        _lazy_command(commands, argv, "bench", "batch-size throughput sweep", "bench.sweep")
        _lazy_command(commands, argv, "speedrun", "time to 89.5%% test accuracy on "
                      "Fashion-MNIST, gpunet against PyTorch", "bench.speedrun", data=True)
    _lazy_command(commands, argv, "sweep", "train a grid of learning rates, weight decays and "
                  "seeds as one stack, ranked by validation", "sweep.cli", data=True)
    add_demo_parser(commands)
    return parser


def _lazy_command(commands, argv, name, help, module, data=False):
    """Subcommand ``name``, whose options and ``run`` come from ``gpunet.<module>``, imported
    only when that command runs (train and eval never need it); ``data``: with the dataset
    options."""
    command = commands.add_parser(name, help=help)
    if _command_of(sys.argv[1:] if argv is None else argv) == name:
        chosen = importlib.import_module(f"gpunet.{module}")
        chosen.add_arguments(command)
        if data:
            _add_data_options(command)
        command.set_defaults(func=chosen.run)


def _command_of(argv):
    """The subcommand named in ``argv`` (its first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _add_common(parser):
    _add_data_options(parser)
    parser.add_argument("--max-params", type=positive_int, metavar="N",
                        help=f"the most parameters a checkpoint to read may declare "
                             f"(default: {DEFAULT_LIMITS.max_parameters:,})")


def _add_data_options(parser):
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder holding the dataset's IDX files (the only one searched "
                             "when given; a missing file is downloaded into DIR/NAME)")
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of downloading a missing dataset")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                        help="default: auto (the GPU when one answers)")


# -- data and model ---------------------------------------------------------------------

# -- train ------------------------------------------------------------------------------
def _run_config(args, stored):
    """The run-defining settings: explicit options, else the checkpoint's, else defaults."""
    config = {}
    for key, default in RUN_DEFAULTS.items():
        given = getattr(args, key)
        if stored and given is not None and given != stored.get(key, given):
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{flag} {given} differs from the resumed run's {stored[key]}; "
                             f"drop {flag} or start a new run")
        config[key] = given if given is not None else stored.get(key, default)
    for key, default in optim.DEFAULTS[config["optimizer"]].items():
        if config[key] is None:
            config[key] = default
    if config["batch_size"] is None:
        config["batch_size"] = DEFAULT_BATCH_SIZE[config["dataset"]]
    return config


def _output_dir(args, config):
    if args.out is not None:
        return args.out
    if args.resume is not None:
        return os.path.dirname(os.path.abspath(args.resume))
    return os.path.join("runs", f"{config['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}")


def _checkpoint_path(args, out):
    """``out``'s checkpoint path, unless a run other than the resumed one is saved there
    (checked while the folder is claimed)."""
    checkpoint = os.path.join(out, CHECKPOINT_NAME)
    resuming_here = args.resume is not None and os.path.exists(checkpoint) \
        and os.path.samefile(checkpoint, args.resume)
    if os.path.exists(checkpoint) and not resuming_here:
        raise UsageError(f"{out} already holds a checkpoint; choose another --out, or "
                         f"continue it with --resume {checkpoint}")
    return checkpoint


def _read_checkpoint(args, path, backend):
    limits = LoadLimits(max_parameters=args.max_params) if args.max_params else None
    return load(path, device=backend, limits=limits)


def _device_line(args, backend):
    """``device: ...``; with ``--device auto`` on the CPU, also why the GPU is not used."""
    line = f"device: {backend.name} ({backend.xp.__name__})"
    if args.device == "auto" and backend.name == "cpu":
        ok, reason = backend_module.gpu_status()
        if not ok:
            line += f"; --device auto fell back to the CPU: {reason}"
    return line


def _saved_note(checkpoint, epochs, args, resume):
    """What an interrupted run leaves behind, in words."""
    epoch = saved_epoch(checkpoint)
    if epoch is not None:
        more = (f"; continue with: gpunet train --resume {checkpoint}" if epoch < epochs
                else "")
        return f"the checkpoint {checkpoint} keeps epoch {epoch} of {epochs}{more}"
    if resume is not None:
        return f"no new epoch was saved; {args.resume} still holds epoch {resume.epoch}"
    return "nothing was saved (no epoch had finished)"


def run_train(args):
    comm = getattr(args, "comm", None)
    backend = comm.backend if comm is not None else get_backend(args.device)
    resume = _read_checkpoint(args, args.resume, backend) if args.resume else None
    stored = resume.meta.get("config", {}) if resume is not None else {}
    if resume is not None and not stored:
        raise UsageError(f"{args.resume} was not written by gpunet train (no run settings); "
                         f"resume it from Python with gpunet.fit(..., resume=...)")
    config = _run_config(args, stored)
    epochs = args.epochs or stored.get("epochs") or DEFAULT_EPOCHS[config["dataset"]]
    config["epochs"] = epochs
    if resume is not None and epochs <= resume.epoch:
        raise UsageError(f"{args.resume} has already trained {resume.epoch} epochs; pass "
                         f"--epochs N with N > {resume.epoch} (the total to reach)")
    if comm is not None and not comm.is_root:  # rank 0 alone writes the output folder
        _train_in(None, None, args, config, backend, resume)
        return 0
    out = _output_dir(args, config)
    with RunClaim(out):  # before the data load: a busy or read-only folder fails at once
        checkpoint = _checkpoint_path(args, out)
        try:
            _train_in(out, checkpoint, args, config, backend, resume)
        except KeyboardInterrupt as exc:
            exc.note = _saved_note(checkpoint, epochs, args, resume)
            raise
    return 0


def _train_in(out, checkpoint, args, config, backend, resume):
    """Load the data, build or restore the model, train and test; write into ``out``
    (None on a rank other than 0 of a distributed run: it trains, and leaves the rest)."""
    comm = getattr(args, "comm", None)
    train, test, classes, source = load_data(config["dataset"], args.data_dir,
                                             not args.no_download, config["seed"])
    manual_seed(config["seed"])
    if resume is not None:
        model, optimizer = resume.model, resume.make_optimizer()
    else:
        num_inputs = int(np.prod(train[0].shape[1:]))
        model = build_model(num_inputs, config["hidden"], config["activation"],
                            len(classes)).to(backend)
        optimizer = _make_optimizer(model, config)
    try:  # before any output: a graph that cannot be had is a usage error
        graph_mode(args.graph, model, CrossEntropyLoss(), *train)
    except ValueError as exc:
        raise UsageError(f"--graph {args.graph}: {exc}") from None
    print(_device_line(args, backend))
    print(source)
    print(f"model: {_describe_model(model)}")
    print("config: " + " ".join(f"{k}={v}" for k, v in config.items()))
    if comm is not None:
        print(f"distributed: {comm.size} ranks, global batch {config['batch_size']} = "
              f"{comm.size} x {config['batch_size'] // max(comm.size, 1)} per rank")
    print(f"output: {out}" + (f" (resuming at epoch {resume.epoch})" if resume else ""),
          flush=True)
    epochs = config["epochs"]
    metrics = None if out is None else MetricsWriter(
        out, config, backend.name,
        FitState.from_checkpoint(resume).history.records if resume else ())
    try:
        history = fit(model, CrossEntropyLoss(), optimizer, train,
                      val_split=config["val_split"], epochs=epochs,
                      batch_size=config["batch_size"],
                      schedule=make_schedule(config["schedule"], epochs),
                      patience=config["patience"], seed=config["seed"], checkpoint=checkpoint,
                      clip_grad_norm=config["clip_grad_norm"],
                      checkpoint_meta={"config": config}, resume=resume,
                      progress=not args.no_progress,
                      on_epoch_end=None if metrics is None else metrics.epoch_done,
                      graph=args.graph, distributed=comm)
    except BaseException as exc:
        if metrics is not None:
            metrics.stopped("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    if metrics is None:
        return
    test_result = evaluate(model, *test, CrossEntropyLoss())
    print(f"test accuracy: {100 * test_result.accuracy:.2f}% (loss {test_result.loss:.4f}, "
          f"{len(test[0])} samples)")
    names = metrics.finish(history, test_result)
    print(f"wrote {out}: {', '.join([CHECKPOINT_NAME, *names])}")


# -- eval -------------------------------------------------------------------------------
def run_eval(args):
    backend = get_backend(args.device)
    checkpoint = _read_checkpoint(args, args.checkpoint, backend)
    config = checkpoint.meta.get("config")
    if not config:
        raise UsageError(f"{args.checkpoint} was not written by gpunet train: it does not "
                         f"name its dataset")
    _, (X, y), classes, source = load_data(config["dataset"], args.data_dir,
                                           not args.no_download, config["seed"])
    model = checkpoint.model
    predicted = to_numpy(predict(model, X, args.batch_size)).argmax(axis=1)
    y = to_numpy(y)
    accuracy = float((predicted == y).mean())
    print(_device_line(args, backend))
    print(source)
    print(f"checkpoint: {args.checkpoint} (epoch {checkpoint.epoch}, "
          f"{_describe_model(model)})")
    print(f"test accuracy: {100 * accuracy:.2f}% on {len(y)} {config['dataset']} samples")
    print(format_confusion(confusion_matrix(y, predicted, len(classes)), classes))
    return 0


# -- entry point ------------------------------------------------------------------------
def main(argv=None) -> int:
    """Run the command line; return the exit status (2 for bad arguments, like argparse;
    130 after Ctrl-C, 143 after SIGTERM)."""
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    args.comm = None
    try:
        with sigterm_as_interrupt():
            if getattr(args, "distributed", False):
                args.comm = distributed.init(args.device)
                if not args.comm.is_root:  # only rank 0 prints
                    sys.stdout = open(os.devnull, "w")
            return args.func(args)
    except (UsageError, CheckpointError, DatasetError, BackendUnavailable, FolderInUse,
            distributed.DistributedError, OSError, ValueError, TypeError) as exc:
        return _report(args.comm, f"{prog}: error: {exc}", 2)
    except NonFiniteLossError as exc:
        return _report(args.comm, f"{prog}: training stopped: {exc}", 1)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        note = getattr(exc, "note", None)
        return _report(args.comm, f"\n{prog}: "
                       f"{'terminated (SIGTERM)' if terminated else 'interrupted'}"
                       + (f"; {note}" if note else ""), 143 if terminated else 130)


def _report(comm, message, code):
    """Print ``message`` on stderr and return ``code``; in a distributed run, end every
    rank with it (a rank left waiting for this one would hang): see ``Communicator.fail``."""
    if comm is not None:
        comm.fail(message, code)  # never returns
    print(message, file=sys.stderr)
    return code
