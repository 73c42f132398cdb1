"""``MLPClassifier`` and ``MLPRegressor``: drop-in estimators with the parameters of
``sklearn.neural_network`` (plus ``device``), trained by gpunet."""
from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.multiclass import check_classification_targets

from ..nn import CrossEntropyLoss, MSELoss
from .base import BaseMLP

_PARAMETERS = """
    Parameters are scikit-learn's (``hidden_layer_sizes``, ``activation`` in identity /
    logistic / tanh / relu, ``solver`` in adam / sgd, ``alpha``, ``batch_size``,
    ``learning_rate``, ``learning_rate_init``, ``power_t``, ``max_iter``, ``shuffle``,
    ``random_state``, ``tol``, ``verbose``, ``warm_start``, ``momentum``,
    ``nesterovs_momentum``, ``early_stopping``, ``validation_fraction``, ``beta_1``,
    ``beta_2``, ``epsilon``, ``n_iter_no_change``) plus ``device`` (``"auto"``: the GPU when
    one answers, ``"cpu"``, ``"gpu"``). They differ from sklearn's in that: the network runs
    in float32; weights start as gpunet's (He for relu, Xavier for tanh and logistic) with
    zero biases; ``alpha`` decays the biases too; there is no L-BFGS.

    After fitting: ``n_features_in_``, ``n_outputs_``, ``n_layers_``, ``n_iter_``, ``t_``,
    ``loss_`` and ``loss_curve_`` (mean training loss per epoch), ``best_loss_``,
    ``validation_scores_`` and ``best_validation_score_`` (with ``early_stopping``),
    ``coefs_``, ``intercepts_``, and ``model_`` (the gpunet ``Sequential``) with its
    ``optimizer_``. Estimators pickle (joblib) and clone; a GPU-trained one loads where a GPU
    answers.
"""


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = ("A multi-layer perceptron classifier trained by gpunet (softmax "
               "cross-entropy); labels may be any values, e.g. strings (``classes_``).\n"
               + _PARAMETERS)

    _y_validation: dict = {}

    def fit(self, X, y):
        """Train on ``X`` (n_samples, n_features) and labels ``y``; returns self."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, from where the last call left off; the first call
        needs ``classes``, every label there will ever be."""
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        return self._fit(X, y, incremental=True, classes=classes)

    def predict(self, X):
        """The most probable class of each sample."""
        best = self._forward(X).argmax(axis=1)
        return self.classes_[best]

    def predict_log_proba(self, X):
        """Log-probabilities of each class (columns in the order of ``classes_``)."""
        z = self._forward(X)
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict_proba(self, X):
        """Probabilities of each class (columns in the order of ``classes_``)."""
        return np.exp(self.predict_log_proba(X))

    def _targets(self, y, first, incremental, classes=None):
        check_classification_targets(y)
        if first:
            if incremental and classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit "
                                 "(every label there will be, e.g. np.unique(y_all))")
            found = np.unique(y if classes is None else classes)
            if len(found) < 2:
                raise ValueError(f"MLPClassifier needs samples of at least 2 classes in y; "
                                 f"got 1 class: {found.tolist()}")
            self.classes_ = found
        elif not incremental and not np.array_equal(np.unique(y), self.classes_):
            raise ValueError(f"warm_start can only be used where y has the same classes as "
                             f"in the previous call to fit: {self.classes_.tolist()}, got "
                             f"{np.unique(y).tolist()}")
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(f"y holds labels {unseen.tolist()[:5]} that are not in classes_ "
                             f"{self.classes_.tolist()}")
        return np.searchsorted(self.classes_, y).astype(np.int64), len(self.classes_)

    def _stratify(self, y):
        return y

    def _loss(self):
        return CrossEntropyLoss()

    def _validation_score(self, outputs, y):
        return float(np.mean(outputs.argmax(axis=1) == y))


class _HalfSquaredError(MSELoss):
    """sklearn's regression loss: half the mean squared error."""

    def forward(self, backend, prediction, target, grad):
        loss = super().forward(backend, prediction, target, grad)
        grad *= 0.5
        return loss * 0.5


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = ("A multi-layer perceptron regressor trained by gpunet (half the mean squared "
               "error, identity output); ``y`` of shape (n,) or (n, n_outputs).\n"
               + _PARAMETERS)

    _y_validation = {"multi_output": True, "y_numeric": True}

    def fit(self, X, y):
        """Train on ``X`` (n_samples, n_features) and targets ``y``; returns self."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X, y):
        """One epoch over ``(X, y)``, from where the last call left off."""
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted targets: shape (n,) for one output, else (n, n_outputs)."""
        out = self._forward(X)
        return out.ravel() if self.n_outputs_ == 1 else out

    def _targets(self, y, first, incremental):
        y = np.asarray(y, dtype=np.float32)
        y = y.reshape(len(y), -1)
        if not first and y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} outputs, but {type(self).__name__} was "
                             f"fitted with {self.n_outputs_}")
        return y, y.shape[1]

    def _stratify(self, y):
        return None

    def _loss(self):
        return _HalfSquaredError()

    def _validation_score(self, outputs, y):
        return float(r2_score(y, outputs))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
