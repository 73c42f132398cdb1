"""gpunet: multi-layer perceptrons trained on NVIDIA GPUs through CuPy, NumPy on the CPU.

    import gpunet as gn
    model = gn.Sequential(gn.Flatten(), gn.Linear(784, 512), gn.ReLU(),
                          gn.Linear(512, 512), gn.ReLU(), gn.Linear(512, 10))
    loss_fn = gn.CrossEntropyLoss()
    opt = gn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    opt.step()
"""
from . import distributed, optim
from .data import datasets
from .nn import init
from .training.loop import schedules
from .backend import (BackendUnavailable, get_backend, gpu_status, manual_seed,
                      set_tf32, to_numpy, warmup)
from .training.run_files.checkpoint import Checkpoint, CheckpointError, LoadLimits, load, save
from .nn.gradcheck import GradcheckError, gradcheck
from .training.loop.history import History
from .data.loader import DataLoader
from .nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, NLLLoss
from .nn.module import Module
from .nn.activations import Activation, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .nn import Dropout, Flatten, Linear, Sequential, from_config, register_layer
from .nn.stack import Stack, stack
from .nn.parameter import Parameter
from .nn.clip_grad import clip_grad_norm_, clip_grad_value_
from .training.loop.evaluation import Evaluation, evaluate, predict
from .training.loop.callbacks import StopTraining
from .training.loop.fit import NonFiniteLossError, fit

__version__ = "0.1.0"

__all__ = [
    "Activation", "register_layer",
    "BCEWithLogitsLoss", "BackendUnavailable", "CrossEntropyLoss", "DataLoader", "Dropout",
    "Flatten",
    "GradcheckError", "LeakyReLU", "Linear", "LogSoftmax", "Loss", "MSELoss", "Module",
    "NLLLoss", "Parameter", "ReLU", "Sequential", "Sigmoid", "Softmax", "Stack", "Tanh",
    "clip_grad_norm_", "clip_grad_value_", "datasets", "distributed", "from_config", "get_backend", "gpu_status", "gradcheck", "init",
    "manual_seed", "optim",
    "set_tf32", "to_numpy", "warmup",
    "Checkpoint", "CheckpointError", "Evaluation", "LoadLimits", "History", "NonFiniteLossError",
    "StopTraining", "evaluate", "fit", "load", "predict", "save", "schedules", "stack",
]
