"""What ``gpunet sweep`` reports: the models ranked by validation accuracy (a table), the
test accuracy of the top models' averaged probabilities (``--ensemble K``), and the files:
``sweep.json``, ``sweep.csv`` and ``sweep.png``."""
from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from ..backend import to_numpy
from ..training.loop.evaluation import predict
from ..training.run_files.atomic import write_text

COLUMNS = ("rank", "model", "lr", "weight_decay", "seed", "epochs", "val_accuracy",
           "val_loss", "train_loss")


def rows(result):
    """One dict per model, best first (the :data:`COLUMNS`)."""
    table = []
    for rank, i in enumerate(result.ranking(), 1):
        config, history = result.configurations[i], result.histories[i]
        table.append({"rank": rank, "model": i, **config, "epochs": len(history),
                      "val_accuracy": float(result.val.accuracy[i]),
                      "val_loss": float(result.val.loss[i]),
                      "train_loss": history.records[-1]["train_loss"] if len(history)
                      else None})
    return table


def format_table(result, limit=None):
    """The ranking as aligned text (the first ``limit`` models, or all)."""
    shown = rows(result)[:limit]
    lines = [f"{'rank':>4}  {'model':>5}  {'lr':>9}  {'weight decay':>12}  {'seed':>4}  "
             f"{'epochs':>6}  {'val acc':>8}  {'val loss':>8}  {'train loss':>10}"]
    for r in shown:
        train = "-" if r["train_loss"] is None else f"{r['train_loss']:.4f}"
        lines.append(f"{r['rank']:>4}  {r['model']:>5}  {r['lr']:>9.4g}  "
                     f"{r['weight_decay']:>12.4g}  {r['seed']:>4}  {r['epochs']:>6}  "
                     f"{100 * r['val_accuracy']:>7.2f}%  {r['val_loss']:>8.4f}  {train:>10}")
    hidden = len(result.configurations) - len(shown)
    if hidden > 0:
        lines.append(f"({hidden} more in sweep.csv)")
    return "\n".join(lines)


def format_timing(result):
    """The sweep's time against the estimate of the same fits one by one."""
    speedup = result.one_by_one_seconds / result.seconds
    return (f"{len(result.configurations)} models trained together in {result.seconds:.1f} s; "
            f"one by one about {result.one_by_one_seconds:.1f} s (one model's epoch timed "
            f"alone: {result.epoch_seconds:.3f} s, times the {sum(map(len, result.histories))}"
            f" epochs trained): {speedup:.1f}x")


def probabilities(stack, X, models):
    """Softmax outputs (len(models), samples, classes) of the stack's models ``models``."""
    logits = to_numpy(predict(stack, X)).astype(np.float64)[models]
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def ensemble(result, X, y, k):
    """Test accuracy of the top ``k`` models' averaged probabilities, and of each of them
    alone: ``{"models", "accuracy", "members"}``."""
    top = result.ranking()[:k]
    probs = probabilities(result.stack, X, top)
    y = to_numpy(y)
    members = [float((p.argmax(axis=1) == y).mean()) for p in probs]
    accuracy = float((probs.mean(axis=0).argmax(axis=1) == y).mean())
    return {"models": top, "accuracy": accuracy, "members": members}


def write_files(out, result, summary):
    """``sweep.json`` (``summary`` with every model's configuration, result and history)
    and ``sweep.csv`` (one row per model, best first); returns their names."""
    table = rows(result)
    models = []
    for r in sorted(table, key=lambda r: r["model"]):
        models.append({**r, "history": result.histories[r["model"]].records})
    text = json.dumps({**summary, "models": models}, indent=1, default=_plain)
    write_text(os.path.join(out, "sweep.json"), text + "\n", what="sweep file")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_text(os.path.join(out, "sweep.csv"), buffer.getvalue(), what="sweep file")
    return ["sweep.json", "sweep.csv"]


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def plot(result, path, best=5):
    """``sweep.png``: validation accuracy of every configuration (against the learning rate,
    one colour per weight decay), and the validation accuracy per epoch of the best
    ``best`` models. Needs matplotlib (the ``plot`` extra)."""
    from ..demo.plotting import panels, save

    fig, (grid_ax, curves_ax) = panels(2, f"gpunet sweep: {len(result.configurations)} models")
    decays = sorted({c["weight_decay"] for c in result.configurations})
    for wd in decays:
        chosen = [i for i, c in enumerate(result.configurations) if c["weight_decay"] == wd]
        grid_ax.scatter([result.configurations[i]["lr"] for i in chosen],
                        [100 * result.val.accuracy[i] for i in chosen], label=f"wd {wd:g}",
                        alpha=0.8)
    grid_ax.set_xscale("log")
    grid_ax.set(xlabel="learning rate", ylabel="validation accuracy (%)",
                title="each configuration")
    grid_ax.legend()
    for i in result.ranking()[:best]:
        history, config = result.histories[i], result.configurations[i]
        curve = [100 * a for a in history["val_accuracy"]]
        curves_ax.plot(history["epoch"], curve, marker="o", markersize=3,
                       label=f"lr {config['lr']:g}, wd {config['weight_decay']:g}, "
                             f"seed {config['seed']}")
    curves_ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title=f"the best {best}")
    curves_ax.legend(fontsize="small")
    for ax in (grid_ax, curves_ax):
        ax.grid(alpha=0.3)
    save(fig, path)
    return "sweep.png"
