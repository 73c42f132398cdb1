"""Layers, losses and their building blocks: each layer defines ``forward`` and ``backward``.

``module`` (the base class), ``parameter`` (weights and the flat buffer), ``layers`` (Linear,
Flatten, Dropout, Sequential and the layer registry), ``activations``, ``losses``, ``init``
(initialisers) and ``gradcheck`` (central differences against ``backward``).
"""
from .activations import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .gradcheck import GradcheckError, gradcheck
from .layers import LAYERS, Dropout, Flatten, Linear, Sequential, from_config
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss, NLLLoss
from .module import Module
from .parameter import Parameter

__all__ = [
    "BCEWithLogitsLoss", "CrossEntropyLoss", "Dropout", "Flatten", "GradcheckError", "LAYERS",
    "LeakyReLU", "Linear", "LogSoftmax", "Loss", "MSELoss", "Module", "NLLLoss", "Parameter",
    "ReLU", "Sequential", "Sigmoid", "Softmax", "Tanh", "from_config", "gradcheck",
]
