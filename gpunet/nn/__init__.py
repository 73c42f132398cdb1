"""Layers, losses and their building blocks: each layer defines ``forward`` and ``backward``.

``module`` (the base class), ``parameter`` (weights and the flat buffer), ``layers`` (Linear,
Flatten, Dropout, Sequential), ``activations``, ``registry`` (the layer types a checkpoint may
name: ``register_layer``, ``from_config``), ``boundary`` (arrays handed to the user are
theirs), ``losses``, ``init`` (initialisers), ``gradcheck`` (central differences against
``backward``), and ``stack`` with ``stacked_linear`` (n models of one architecture as one).
"""
from .activations import Activation, LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .gradcheck import GradcheckError, gradcheck
from .layers import Dropout, Flatten, Linear, Sequential
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, NLLLoss
from .module import Module
from .parameter import Parameter
from .registry import LAYERS, check_rebuildable, from_config, register_layer
from .stack import Stack, stack

__all__ = [
    "Activation", "BCEWithLogitsLoss", "CrossEntropyLoss", "Dropout", "Flatten",
    "GradcheckError", "LAYERS", "LeakyReLU", "Linear", "LogSoftmax", "Loss", "MSELoss",
    "Module", "NLLLoss", "Parameter", "ReLU", "Sequential", "Sigmoid", "Softmax", "Tanh",
    "Stack", "check_rebuildable", "from_config", "gradcheck", "register_layer", "stack",
]
