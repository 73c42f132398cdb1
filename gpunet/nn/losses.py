"""Loss functions: each returns the mean loss (0-d array on the device) and, through
``backward()``, the gradient of that loss with respect to its prediction input.

``loss_fn(prediction, target, sample_weight)`` weighs the samples: the loss becomes the
weighted mean ``sum_i w_i l_i / sum_i w_i`` (as scikit-learn's and Keras's weighted losses
normalise per batch, and as torch's class weights do), supported by the losses whose
``sample_weights`` is True.
"""
from __future__ import annotations

import numpy as np

from .activations import sigmoid
from ..backend import backend_of, to_numpy
from ..checks import check_number
from ..ops.workspace import Workspace
from .boundary import public
from .stack import check_model_targets


class Loss:
    """Base of the losses: ``loss = loss_fn(prediction, target)``, then ``loss_fn.backward()``.

    ``backward()`` called by user code returns a new array; inside ``fit`` it hands over the
    buffer the next call reuses (see ``boundary.py``). ``targets`` says what the loss compares
    predictions with: ``"classes"`` (integer labels, checked against the model's outputs
    before training) or ``"values"``.
    """

    targets = "values"
    sample_weights = False  # whether forward takes sample_weight=

    def __init__(self):
        self._grad = None
        self._workspace = None

    def __call__(self, prediction, target, sample_weight=None):
        backend = backend_of(prediction)
        backend.check_array(prediction, "prediction")
        backend.check_array(target, "target")
        if prediction.dtype.kind != "f":
            raise TypeError(f"{type(self).__name__} expects floating-point predictions, got "
                            f"{prediction.dtype}")
        if self._workspace is None or self._workspace.xp is not backend.xp:
            self._workspace = Workspace(backend.xp)
        grad = self._workspace.like("grad", prediction)
        if sample_weight is None:
            loss = self.forward(backend, prediction, target, grad)
        else:
            weights = self._checked_weights(backend, prediction, sample_weight)
            loss = self.forward(backend, prediction, target, grad, sample_weight=weights)
        self._grad = grad
        return loss

    def _checked_weights(self, backend, prediction, sample_weight):
        """``sample_weight`` as a (batch,) array of the prediction's dtype, or an error."""
        name = type(self).__name__
        if not self.sample_weights:
            raise TypeError(f"{name} does not take sample_weight (the losses that do: "
                            f"CrossEntropyLoss, BCEWithLogitsLoss, MSELoss)")
        backend.check_array(sample_weight, "sample_weight")
        if sample_weight.shape != prediction.shape[:1]:
            raise ValueError(f"{name} expects sample_weight of shape {prediction.shape[:1]} "
                             f"(one weight per sample), got {tuple(sample_weight.shape)}")
        if sample_weight.dtype != prediction.dtype:
            sample_weight = sample_weight.astype(prediction.dtype)
        return sample_weight

    def forward(self, backend, prediction, target, grad):
        """Return the mean loss and write d loss / d prediction into ``grad`` (a loss with
        ``sample_weights = True`` also takes ``sample_weight=``, a (batch,) array or None)."""
        raise NotImplementedError(f"{type(self).__name__} must define forward(self, backend, "
                                  f"prediction, target, grad), returning the mean loss and "
                                  f"writing d loss / d prediction into grad")

    @public
    def backward(self):
        """The gradient of the last loss with respect to the prediction."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before the loss was "
                               f"computed: call loss_fn(prediction, target) first")
        return self._grad

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __getstate__(self):
        return {**self.__dict__, "_grad": None, "_workspace": None}


def check_class_targets(name, scores, labels):
    """Validate (batch, classes) scores against integer labels of length batch."""
    if scores.ndim != 2:
        raise ValueError(f"{name} expects 2-D (batch, classes) input, got shape "
                         f"{tuple(scores.shape)}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{name} expects integer class labels, got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != scores.shape[0]:
        raise ValueError(f"{name} expects {scores.shape[0]} labels (one per row of a batch of "
                         f"{scores.shape[0]}), got labels of shape {tuple(labels.shape)}")


class CrossEntropyLoss(Loss):
    """Softmax + negative log-likelihood on raw logits (batch, classes) and integer labels,
    averaged over the batch. Gradient: ``(softmax(z) - onehot(y)) / batch``.

    As ``torch.nn.CrossEntropyLoss``: ``weight`` (one non-negative number per class) weighs
    each sample by its label's weight and the mean divides by the sum of those weights;
    ``label_smoothing`` (in [0, 1]) mixes the one-hot target with the uniform distribution
    (the smoothing term weighted by ``weight`` too, normalised by the same sum). Sample
    weights, ``loss_fn(z, y, sample_weight)``, multiply each sample's weight. Fused in one
    pass on the GPU in every combination.

    ``last_correct`` holds the number of correctly classified rows of the last call (a 0-d
    device array), computed in the same pass. A stack's logits (n, batch, classes) give n
    losses and counts, one per model (labels (batch,) or (groups, batch): ``nn/stack.py``).
    """

    targets = "classes"
    sample_weights = True

    def __init__(self, weight=None, label_smoothing=0.0):
        super().__init__()
        self.weight = None if weight is None else _class_weights(weight)
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", 0, 1)
        self.last_correct = None
        self._device_weight = None

    def forward(self, backend, logits, labels, grad, sample_weight=None):
        if logits.ndim == 3:  # a stack's logits (models, batch, classes): one loss per model
            check_model_targets("CrossEntropyLoss", logits, labels)
        else:
            check_class_targets("CrossEntropyLoss", logits, labels)
        loss, self.last_correct = backend.ops.softmax_cross_entropy(
            logits, labels, grad, weight=self.weight_on(backend, logits),
            sample_weight=sample_weight, label_smoothing=self.label_smoothing)
        return loss

    def weight_on(self, backend, logits):
        """The class weights on ``backend`` in the logits' dtype (copied once), or None."""
        if self.weight is None:
            return None
        if logits.shape[-1] != len(self.weight):
            raise ValueError(f"CrossEntropyLoss has {len(self.weight)} class weights, the "
                             f"logits have {logits.shape[-1]} classes")
        cached = self._device_weight
        if cached is None or backend_of(cached) is not backend or cached.dtype != logits.dtype:
            self._device_weight = cached = backend.asarray(self.weight, dtype=logits.dtype)
        return cached

    def __repr__(self):
        args = ([f"weight={self.weight.tolist()}"] if self.weight is not None else []) + \
            ([f"label_smoothing={self.label_smoothing}"] if self.label_smoothing else [])
        return f"CrossEntropyLoss({', '.join(args)})"

    def __getstate__(self):
        return {**super().__getstate__(), "_device_weight": None}


def _class_weights(weight):
    """``weight`` as a 1-D float64 NumPy array of finite non-negative numbers."""
    try:
        values = np.asarray(to_numpy(weight), dtype=np.float64)
    except (TypeError, ValueError):
        values = None
    if values is None or values.ndim != 1 or len(values) == 0:
        raise ValueError(f"CrossEntropyLoss weight must be a 1-D array with one weight per "
                         f"class, got {weight!r}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"CrossEntropyLoss weight must hold finite numbers >= 0, got "
                         f"{values.tolist()}")
    return values


class NLLLoss(Loss):
    """Negative log-likelihood of log-probabilities (e.g. ``LogSoftmax`` output) and integer
    labels, averaged: ``-mean(logp[i, y_i])``; gradient ``-onehot(y) / batch``."""

    targets = "classes"

    def forward(self, backend, logp, labels, grad):
        check_class_targets("NLLLoss", logp, labels)
        backend.ops.check_labels(labels, logp.shape[1])
        xp, batch = backend.xp, logp.shape[0]
        rows = xp.arange(batch)
        grad[...] = 0
        grad[rows, labels] = -1.0 / batch
        return -logp[rows, labels].mean()


def _matched_target(name, prediction, target):
    """``target`` in the prediction's shape: one value per sample, ``(n,)``, is taken as the
    column ``(n, 1)`` a one-output model predicts; any other mismatch is an error."""
    if prediction.shape == target.shape:
        return target
    if prediction.ndim == 2 and prediction.shape[1] == 1 and target.shape == prediction.shape[:1]:
        return target.reshape(prediction.shape)
    hint = (" (for one output per sample, pass targets of shape (n,) or y[:, None])"
            if prediction.ndim == 2 and prediction.shape[1] == 1 else "")
    raise ValueError(f"{name} expects target of the prediction's shape "
                     f"{tuple(prediction.shape)}, got {tuple(target.shape)}{hint}")


def _weighted_mean(xp, per_element, grad, sample_weight):
    """The sample-weighted mean of ``per_element`` losses (each sample's elements averaged,
    then ``sum_i w_i l_i / sum_i w_i``), and ``grad`` (d per-element loss) scaled to match:
    times ``w_i / (elements per sample * sum_i w_i)``."""
    rows = len(per_element)
    total = sample_weight.sum(dtype=np.float64)
    each = per_element.reshape(rows, -1).mean(axis=1, dtype=np.float64)
    loss = (each @ sample_weight.astype(np.float64)) / total
    scale = sample_weight / (total * (grad.size // max(rows, 1)))
    grad *= scale.astype(grad.dtype).reshape((rows,) + (1,) * (grad.ndim - 1))
    return xp.asarray(loss, dtype=grad.dtype)


class MSELoss(Loss):
    """Mean squared error over all elements (regression, identity output);
    gradient ``2 (prediction - target) / n``. Targets ``(n,)`` fit predictions ``(n, 1)``.
    With ``sample_weight``: each sample's mean squared error, weighted."""

    sample_weights = True

    def forward(self, backend, prediction, target, grad, sample_weight=None):
        target = _matched_target("MSELoss", prediction, target)
        backend.xp.subtract(prediction, target, out=grad)
        if sample_weight is not None:
            loss = _weighted_mean(backend.xp, grad * grad, grad, sample_weight)
            grad *= 2.0
            return loss
        loss = (grad * grad).mean()
        grad *= 2.0 / grad.size
        return loss


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits (sigmoid output) with 0/1 targets, averaged.

    Computed stably as ``max(z, 0) - z t + log(1 + e^-|z|)``; gradient
    ``(sigmoid(z) - t) / n``. Targets ``(n,)`` fit logits ``(n, 1)``. ``last_correct``
    counts the rows whose every logit is on its target's side of 0 (a 0-d device array):
    the accuracy ``fit`` and ``evaluate`` report, thresholded at probability 0.5. With
    ``sample_weight``: each sample's mean, weighted.
    """

    sample_weights = True

    def __init__(self):
        super().__init__()
        self.last_correct = None

    def forward(self, backend, logits, target, grad, sample_weight=None):
        target = _matched_target("BCEWithLogitsLoss", logits, target)
        xp = backend.xp
        losses = xp.maximum(logits, 0) - logits * target + xp.log1p(xp.exp(-xp.abs(logits)))
        hits = (logits > 0) == (target > 0.5)
        self.last_correct = xp.count_nonzero(
            hits.reshape(len(hits), -1).all(axis=1) if hits.ndim > 1 else hits)
        sigmoid(xp, logits, grad)
        grad -= target
        if sample_weight is not None:
            return _weighted_mean(xp, losses, grad, sample_weight)
        grad *= 1.0 / grad.size
        return losses.mean().astype(logits.dtype)
