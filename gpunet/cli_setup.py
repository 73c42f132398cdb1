"""What ``gpunet train`` builds a run from: the datasets it trains on, the model (Flatten,
then Linear + activation per hidden width), the learning-rate schedule and the optimizer."""
from __future__ import annotations

import os

from . import nn, optim
from .data import datasets
from .training.loop.schedules import CosineLR, StepLR


class UsageError(Exception):
    """A semantic error in the arguments, reported like an argparse error (exit 2)."""


ACTIVATIONS = {"relu": (nn.ReLU, "kaiming"), "leaky_relu": (nn.LeakyReLU, "kaiming"),
               "sigmoid": (nn.Sigmoid, "xavier"), "tanh": (nn.Tanh, "xavier")}
IMAGE_DATASETS = ("fashion-mnist", "mnist")
TOY_DATASETS = {"xor": datasets.xor, "spirals": datasets.spirals}
TOY_SIZES = (1000, 500)  # train, test samples of a toy problem


def load_data(name, data_dir, download, seed):
    """``(train, test, class names, source)`` of dataset ``name``; images stay uint8;
    ``source`` is the line to print about where the data came from."""
    if name in TOY_DATASETS:
        make = TOY_DATASETS[name]
        train = make(TOY_SIZES[0], noise=0.1, seed=seed)
        test = make(TOY_SIZES[1], noise=0.1, seed=seed + 1)
        source = (f"data: {name}, generated ({TOY_SIZES[0]} training and {TOY_SIZES[1]} test "
                  f"samples, seed {seed})")
        return train, test, datasets.class_names(name), source
    if data_dir is not None and not os.path.isdir(data_dir):
        raise UsageError(f"--data-dir {data_dir} is not a folder")
    train, test, source = datasets.load_with_source(name, root=data_dir, download=download)
    return train, test, datasets.class_names(name), source


def build_model(num_inputs, hidden, activation, num_classes):
    """Flatten, then Linear + activation per hidden width, then a Linear to the classes."""
    act, init = ACTIVATIONS[activation]
    layers, width = [nn.Flatten()], num_inputs
    for h in hidden:
        layers += [nn.Linear(width, h, init=init), act()]
        width = h
    layers.append(nn.Linear(width, num_classes, init=init))
    return nn.Sequential(*layers)


def describe_model(model):
    widths = [m.in_features for m in model if isinstance(m, nn.Linear)]
    widths.append(model[-1].out_features)
    params = sum(p.data.size for p in model.parameters())
    act = type(model[2]).__name__ if len(model) > 2 else "none"
    return f"{'-'.join(map(str, widths))} {act} ({params:,} parameters)"


def make_schedule(name, epochs):
    if name == "cosine":
        return CosineLR(epochs)
    if name == "step":
        return StepLR(max(1, epochs // 3), gamma=0.1)
    return None


def make_optimizer(model, config):
    kwargs = {"weight_decay": config["weight_decay"]}
    if config["optimizer"] == "sgd":
        kwargs["momentum"] = config["momentum"]
    return optim.OPTIMIZERS[config["optimizer"]](model.parameters(), lr=config["lr"], **kwargs)
