"""``MLPClassifier`` and ``MLPRegressor``: drop-in estimators with the parameters of
``sklearn.neural_network`` (plus ``device``), trained by gpunet."""
from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets

from ..nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
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

    ``fit``, ``partial_fit`` and ``score`` take ``sample_weight`` as sklearn 1.9's do (each
    batch's loss is the weighted mean, the L2 term divided by the batch's weight); ``X`` may
    be a scipy sparse matrix (taken as CSR; a batch of rows at a time is densified, on the
    device).

    After fitting: ``n_features_in_``, ``n_outputs_``, ``n_layers_``, ``out_activation_``,
    ``n_iter_`` (the iterations of the last call), ``t_``, ``loss_`` and ``loss_curve_``
    (mean training loss per epoch), ``best_loss_``, ``validation_scores_`` and
    ``best_validation_score_`` (with ``early_stopping``), ``coefs_``, ``intercepts_``, and
    ``model_`` (the gpunet ``Sequential``) with its ``optimizer_``. Estimators pickle
    (joblib) and clone; a GPU-trained one loads where a GPU answers.
"""


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = ("A multi-layer perceptron classifier trained by gpunet: softmax cross-entropy, "
               "or one logistic output for two classes (as sklearn's); labels may be any "
               "values, e.g. strings (``classes_``). ``class_weight``: ``None``, "
               "``\"balanced\"`` (``n_samples / (n_classes * count)``, not with "
               "``partial_fit``) or a dict ``{label: weight}`` (others 1), as in sklearn's "
               "linear models: multiplies each sample's weight.\n" + _PARAMETERS)

    _y_validation: dict = {}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 class_weight=None, dtype=None, device="auto"):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, dtype=dtype, device=device)
        self.class_weight = class_weight

    def fit(self, X, y, sample_weight=None):
        """Train on ``X`` (n_samples, n_features; dense or sparse) and labels ``y``, each
        sample weighted by ``sample_weight`` (and ``class_weight``); returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``, from where the last call left off; the first call
        needs ``classes``, every label there will ever be."""
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict(self, X):
        """The most probable class of each sample."""
        z = self._forward(X)
        best = (z[:, 0] > 0).astype(np.int64) if self.n_outputs_ == 1 else z.argmax(axis=1)
        return self.classes_[best]

    def predict_log_proba(self, X):
        """Log-probabilities of each class (columns in the order of ``classes_``)."""
        z = self._forward(X)
        if self.n_outputs_ == 1:   # log sigmoid(-z), log sigmoid(z)
            return -np.logaddexp(0, np.hstack([z, -z]))
        z -= z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict_proba(self, X):
        """Probabilities of each class (columns in the order of ``classes_``)."""
        return np.exp(self.predict_log_proba(X))

    def _check_params(self):
        weight = self.class_weight
        if not (weight is None or weight == "balanced" or isinstance(weight, dict)):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict {{label: "
                             f"weight}}, got {weight!r}")
        return super()._check_params()

    def _targets(self, y, first, incremental, classes=None):
        """The class of each label as its index in ``classes_``, and the network's outputs
        (one logistic output for two classes, else one per class)."""
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
        classes = len(self.classes_)
        return np.searchsorted(self.classes_, y).astype(np.int64), 1 if classes == 2 else classes

    def _class_weighted(self, codes, sample_weight, incremental):
        """``sample_weight`` times each sample's class weight, "balanced" counting the
        classes by ``sample_weight`` (sklearn's LogisticRegression)."""
        if self.class_weight is None:
            return sample_weight
        if self.class_weight == "balanced" and incremental:
            raise ValueError("class_weight='balanced' is not supported for partial_fit (the "
                             "class counts of one call are not the data's); pass a dict: "
                             "compute_class_weight('balanced', classes=classes, y=y_all)")
        per_class = compute_class_weight(self.class_weight, classes=self.classes_,
                                         y=self.classes_[codes], sample_weight=sample_weight)
        weights = per_class[codes]
        return weights if sample_weight is None else sample_weight * weights

    def _loss_targets(self, codes):
        return codes.astype(self._dtype) if self.n_outputs_ == 1 else codes

    def _out_activation(self, n_out):
        return "logistic" if n_out == 1 else "softmax"

    def _stratify(self, codes):
        return codes

    def _loss(self):
        return BCEWithLogitsLoss() if self.n_outputs_ == 1 else CrossEntropyLoss()

    def _validation_score(self, outputs, y, sample_weight):
        predicted = (outputs[:, 0] > 0) if self.n_outputs_ == 1 else outputs.argmax(axis=1)
        return float(accuracy_score(np.asarray(y).astype(np.int64), predicted,
                                    sample_weight=sample_weight))


class _HalfSquaredError(MSELoss):
    """sklearn's regression loss: half the mean squared error."""

    def forward(self, backend, prediction, target, grad, sample_weight=None):
        loss = super().forward(backend, prediction, target, grad, sample_weight)
        grad *= 0.5
        return loss * 0.5


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = ("A multi-layer perceptron regressor trained by gpunet (half the mean squared "
               "error, identity output); ``y`` of shape (n,) or (n, n_outputs).\n"
               + _PARAMETERS)

    _y_validation = {"multi_output": True, "y_numeric": True}

    def fit(self, X, y, sample_weight=None):
        """Train on ``X`` (n_samples, n_features; dense or sparse) and targets ``y``, each
        sample weighted by ``sample_weight``; returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, from where the last call left off."""
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predicted targets: shape (n,) for one output, else (n, n_outputs)."""
        out = self._forward(X)
        return out.ravel() if self.n_outputs_ == 1 else out

    def _targets(self, y, first, incremental):
        y = np.asarray(y, dtype=np.float64)
        y = y.reshape(len(y), -1)
        if not first and y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} outputs, but {type(self).__name__} was "
                             f"fitted with {self.n_outputs_}")
        return y, y.shape[1]

    def _class_weighted(self, y, sample_weight, incremental):
        return sample_weight

    def _loss_targets(self, y):
        return y.astype(self._dtype)

    def _out_activation(self, n_out):
        return "identity"

    def _stratify(self, y):
        return None

    def _loss(self):
        return _HalfSquaredError()

    def _validation_score(self, outputs, y, sample_weight):
        return float(r2_score(y, outputs, sample_weight=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
