"""``gpunet sweep``: a grid of learning rates, weight decays and seeds trained as one stack.

    gpunet sweep --lr 0.01 0.03 0.1 --weight-decay 0 1e-4 --seeds 3 --epochs 10 --out DIR

trains the 18 models together, prints them ranked by validation accuracy and the time
against the estimate of the same fits one by one, and writes ``DIR/sweep.json``,
``sweep.csv``, ``sweep.png`` and ``best.npz`` (the best model, for ``gpunet eval``); with
``--ensemble K``, also the test accuracy of the top K models' averaged probabilities.
``--quick`` is a small run for CI.
"""
from __future__ import annotations

import os
import time

from .. import optim
from ..backend import get_backend, manual_seed
from ..checks import argparse_type, check_number
from ..cli import (fraction, non_negative_float, non_negative_int, positive_float,
                   positive_int)
from ..cli_setup import (ACTIVATIONS, IMAGE_DATASETS, TOY_DATASETS, UsageError,
                         describe_model, load_data)
from ..data.augment import with_shifts
from ..training.loop.evaluation import evaluate
from ..training.loop.fit import validation_rows
from ..nn.losses import CrossEntropyLoss
from ..training.loop.orders import ORDERS
from ..training.run_files.checkpoint import save
from ..training.run_files.runclaim import RunClaim
from . import report
from .grid import Settings, configurations, train_grid

QUICK = {"train": 4000, "test": 1000, "epochs": 2}  # --quick: samples and epochs
DEFAULT_EPOCHS = 10
BEST_NAME = "best.npz"

#: The validation fraction: above 0, since the models are ranked on it.
held_out = argparse_type(check_number, low=0, high=1, low_open=True, high_open=True)


def add_arguments(parser):
    """The options of ``gpunet sweep`` (data options and --device are the CLI's own)."""
    parser.add_argument("--lr", type=positive_float, nargs="+", metavar="LR",
                        help="learning rates to try (default: the optimizer's default)")
    parser.add_argument("--weight-decay", type=non_negative_float, nargs="+", default=[0.0],
                        metavar="WD", help="weight decays to try (default: 0)")
    parser.add_argument("--seeds", type=positive_int, default=1, metavar="N",
                        help="initialisations per configuration, seeds 0..N-1 (default: 1)")
    parser.add_argument("--epochs", type=positive_int,
                        help=f"epochs per model (default: {DEFAULT_EPOCHS}; "
                             f"{QUICK['epochs']} with --quick)")
    parser.add_argument("--dataset", choices=IMAGE_DATASETS + tuple(TOY_DATASETS),
                        default="fashion-mnist", help="default: fashion-mnist")
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=[512, 512],
                        metavar="WIDTH", help="hidden layer widths (default: 512 512)")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    parser.add_argument("--dropout", type=fraction, default=0.0, metavar="P",
                        help="a Dropout(P) after each hidden activation (default: 0, none)")
    parser.add_argument("--augment", choices=("none", "shifts"), default="none",
                        help="shifts: add four copies of each training image moved one "
                             "pixel up, down, left and right (5x the samples of an epoch; "
                             "image datasets) (default: none)")
    parser.add_argument("--optimizer", choices=sorted(optim.OPTIMIZERS), default="sgd")
    parser.add_argument("--momentum", type=fraction, default=optim.DEFAULTS["sgd"]["momentum"],
                        help="SGD momentum (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--schedule", choices=("cosine", "step", "none"), default="cosine")
    parser.add_argument("--val-split", type=held_out, default=0.1,
                        help="fraction of the training set held out to rank the models "
                             "(default: 0.1)")
    parser.add_argument("--patience", type=positive_int,
                        help="stop a model after this many epochs without a lower "
                             "validation loss, keeping its best weights (default: off)")
    parser.add_argument("--order", choices=ORDERS, default="shared",
                        help="one data order for all models, one per model, or a "
                             "bootstrap sample per model (bagging) (default: shared)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the validation split and the data order (default: 0)")
    parser.add_argument("--ensemble", type=positive_int, metavar="K",
                        help="also report the test accuracy of the top K models' averaged "
                             "probabilities")
    parser.add_argument("--quick", action="store_true",
                        help=f"a small run for CI: {QUICK['train']:,} training and "
                             f"{QUICK['test']:,} test samples, {QUICK['epochs']} epochs")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default: runs/sweep-DATASET-TIMESTAMP)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _split(train, fraction, seed):
    """``(train, val)``: ``fraction`` held out as ``fit(val_split=...)`` holds it out."""
    X, y = train
    try:
        rows, held = validation_rows(len(X), fraction, seed)
    except ValueError as exc:
        raise UsageError(f"--val-split {fraction}: {exc}") from exc
    return (X[rows], y[rows]), (X[held], y[held])


def _data(args):
    train, test, classes, source = load_data(args.dataset, args.data_dir,
                                             not args.no_download, args.seed)
    print(source)
    if args.quick:
        train = tuple(a[:QUICK["train"]] for a in train)
        test = tuple(a[:QUICK["test"]] for a in test)
    return train, test, classes


def run(args):
    backend = get_backend(args.device)
    epochs = args.epochs or (QUICK["epochs"] if args.quick else DEFAULT_EPOCHS)
    lrs = args.lr or [optim.DEFAULTS[args.optimizer]["lr"]]
    swept = len(lrs) * len(args.weight_decay) * args.seeds
    if args.ensemble and args.ensemble > swept:
        raise UsageError(f"--ensemble {args.ensemble} is more than the {swept} "
                         f"model{'s' if swept > 1 else ''} swept")
    if args.augment != "none" and args.dataset not in IMAGE_DATASETS:
        raise UsageError(f"--augment {args.augment} moves the pixels of images: it needs "
                         f"an image dataset ({', '.join(IMAGE_DATASETS)}), got "
                         f"--dataset {args.dataset}")
    grid = configurations(lrs, args.weight_decay, list(range(args.seeds)))
    settings = Settings(args.hidden, args.activation, args.optimizer,
                        args.momentum if args.optimizer == "sgd" else None, args.batch_size,
                        epochs, args.schedule, args.patience, args.seed, args.order,
                        args.dropout)
    out = args.out or os.path.join("runs", f"sweep-{args.dataset}-"
                                           f"{time.strftime('%Y%m%d-%H%M%S')}")
    with RunClaim(out):
        if os.path.exists(os.path.join(out, "sweep.json")):
            raise UsageError(f"{out} already holds a sweep; choose another --out")
        _sweep_in(out, args, grid, settings, backend)
    return 0


def _sweep_in(out, args, grid, settings, backend):
    train, test, classes = _data(args)
    train, val = _split(train, args.val_split, args.seed)
    originals = len(train[0])
    if args.augment == "shifts":
        train = with_shifts(*train)
    manual_seed(args.seed)
    print(f"device: {backend.name} ({backend.xp.__name__})")
    print(f"sweep: {len(grid)} models = lr {_listed(args.lr or [grid[0]['lr']])} x weight "
          f"decay {_listed(args.weight_decay)} x {args.seeds} seed(s); {settings.optimizer}, "
          f"{settings.epochs} epochs, batch {settings.batch_size}, {settings.schedule} "
          f"schedule, order {settings.order}")
    augmented = (f" ({originals:,} and their 4 shifted copies)"
                 if args.augment == "shifts" else "")
    print(f"data: {args.dataset}, {len(train[0]):,} training{augmented}, {len(val[0]):,} "
          f"validation, {len(test[0]):,} test samples; output: {out}", flush=True)
    result = train_grid(train, val, len(classes), grid, settings, backend,
                        progress=not args.no_progress)
    print(f"model: {describe_model(result.stack[0])}")
    print(report.format_table(result, limit=20))
    print(report.format_timing(result))
    best = result.ranking()[0]
    best_model = result.stack[best]
    tested = evaluate(best_model, *test, CrossEntropyLoss())
    print(f"best: model {best} ({_described(grid[best])}), test accuracy "
          f"{100 * tested.accuracy:.2f}%")
    summary = {"dataset": args.dataset, "augment": args.augment, "device": backend.name,
               "settings": vars(settings), "seconds": result.seconds,
               "one_by_one_seconds": result.one_by_one_seconds,
               "one_model_epoch_seconds": result.epoch_seconds,
               "best": {"model": best, **grid[best], "test_accuracy": tested.accuracy}}
    if args.ensemble:
        combined = report.ensemble(result, *test, args.ensemble)
        summary["ensemble"] = combined
        print(f"ensemble of the top {args.ensemble}: test accuracy "
              f"{100 * combined['accuracy']:.2f}% (members alone: "
              f"{', '.join(f'{100 * a:.2f}%' for a in combined['members'])})")
    config = {"dataset": args.dataset, "seed": args.seed, "hidden": settings.hidden,
              "activation": settings.activation, "optimizer": settings.optimizer,
              **grid[best], "batch_size": settings.batch_size, "epochs": settings.epochs}
    save(os.path.join(out, BEST_NAME), best_model, epoch=len(result.histories[best]),
         config=config)
    names = report.write_files(out, result, summary) + [BEST_NAME]
    try:
        names.append(report.plot(result, os.path.join(out, "sweep.png")))
    except ImportError as exc:
        print(f"sweep.png skipped: {exc}")
    print(f"wrote {out}: {', '.join(names)}")


def _listed(values):
    return "{" + ", ".join(f"{v:g}" for v in values) + "}"


def _described(configuration):
    return (f"lr {configuration['lr']:g}, weight decay {configuration['weight_decay']:g}, "
            f"seed {configuration['seed']}")
