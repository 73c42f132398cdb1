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
from . import datasets, init, optim, schedules
from .backend import (BackendUnavailable, get_backend, gpu_status, manual_seed,
                      set_tf32, to_numpy, warmup)
from .checkpoint import Checkpoint, CheckpointError, load, save
from .gradcheck import GradcheckError, gradcheck
from .history import History
from .loader import DataLoader
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, NLLLoss
from .module import Module
from .activations import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .nn import Dropout, Flatten, Linear, Sequential, from_config
from .parameter import Parameter
from .evaluation import Evaluation, evaluate, predict
from .train import NonFiniteLossError, fit

__version__ = "0.1.0"

__all__ = [
    "BCEWithLogitsLoss", "BackendUnavailable", "CrossEntropyLoss", "DataLoader", "Dropout",
    "Flatten",
    "GradcheckError", "LeakyReLU", "Linear", "LogSoftmax", "Loss", "MSELoss", "Module",
    "NLLLoss", "Parameter", "ReLU", "Sequential", "Sigmoid", "Softmax", "Tanh",
    "datasets", "from_config", "get_backend", "gpu_status", "gradcheck", "init",
    "manual_seed", "optim",
    "set_tf32", "to_numpy", "warmup",
    "Checkpoint", "CheckpointError", "Evaluation", "History", "NonFiniteLossError",
    "evaluate", "fit", "load", "predict", "save", "schedules",
]
