"""Loss functions: each returns the mean loss (0-d array on the device) and, through
``backward()``, the gradient of that loss with respect to its prediction input."""
from __future__ import annotations

from .activations import sigmoid
from ..backend import backend_of
from ..ops.workspace import Workspace
from .boundary import public


class Loss:
    """Base of the losses: ``loss = loss_fn(prediction, target)``, then ``loss_fn.backward()``.

    ``backward()`` called by user code returns a new array; inside ``fit`` it hands over the
    buffer the next call reuses (see ``boundary.py``). ``targets`` says what the loss compares
    predictions with: ``"classes"`` (integer labels, checked against the model's outputs
    before training) or ``"values"``.
    """

    targets = "values"

    def __init__(self):
        self._grad = None
        self._workspace = None

    def __call__(self, prediction, target):
        backend = backend_of(prediction)
        backend.check_array(prediction, "prediction")
        backend.check_array(target, "target")
        if prediction.dtype.kind != "f":
            raise TypeError(f"{type(self).__name__} expects floating-point predictions, got "
                            f"{prediction.dtype}")
        if self._workspace is None or self._workspace.xp is not backend.xp:
            self._workspace = Workspace(backend.xp)
        grad = self._workspace.like("grad", prediction)
        loss = self.forward(backend, prediction, target, grad)
        self._grad = grad
        return loss

    def forward(self, backend, prediction, target, grad):
        """Return the mean loss and write d loss / d prediction into ``grad``."""
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

    ``last_correct`` holds the number of correctly classified rows of the last call (a 0-d
    device array), computed in the same pass.
    """

    targets = "classes"

    def __init__(self):
        super().__init__()
        self.last_correct = None

    def forward(self, backend, logits, labels, grad):
        check_class_targets("CrossEntropyLoss", logits, labels)
        loss, self.last_correct = backend.ops.softmax_cross_entropy(logits, labels, grad)
        return loss


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


class MSELoss(Loss):
    """Mean squared error over all elements (regression, identity output);
    gradient ``2 (prediction - target) / n``. Targets ``(n,)`` fit predictions ``(n, 1)``."""

    def forward(self, backend, prediction, target, grad):
        target = _matched_target("MSELoss", prediction, target)
        backend.xp.subtract(prediction, target, out=grad)
        loss = (grad * grad).mean()
        grad *= 2.0 / grad.size
        return loss


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits (sigmoid output) with 0/1 targets, averaged.

    Computed stably as ``max(z, 0) - z t + log(1 + e^-|z|)``; gradient
    ``(sigmoid(z) - t) / n``. Targets ``(n,)`` fit logits ``(n, 1)``. ``last_correct``
    counts the rows whose every logit is on its target's side of 0 (a 0-d device array):
    the accuracy ``fit`` and ``evaluate`` report, thresholded at probability 0.5.
    """

    def __init__(self):
        super().__init__()
        self.last_correct = None

    def forward(self, backend, logits, target, grad):
        target = _matched_target("BCEWithLogitsLoss", logits, target)
        xp = backend.xp
        loss = (xp.maximum(logits, 0) - logits * target
                + xp.log1p(xp.exp(-xp.abs(logits)))).mean()
        hits = (logits > 0) == (target > 0.5)
        self.last_correct = xp.count_nonzero(
            hits.reshape(len(hits), -1).all(axis=1) if hits.ndim > 1 else hits)
        sigmoid(xp, logits, grad)
        grad -= target
        grad *= 1.0 / grad.size
        return loss.astype(logits.dtype)
