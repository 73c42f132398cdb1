"""What ``MLPClassifier`` and ``MLPRegressor`` share: scikit-learn's parameters, the network
they describe, and mini-batch training with scikit-learn's stopping rules (``tol`` and
``n_iter_no_change`` on the training loss, or on the validation score with
``early_stopping``; the ``learning_rate`` schedules of ``solver="sgd"``), sample weights as
scikit-learn 1.9 weighs them, and dense or CSR input (``rows.py``)."""
from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .. import nn, optim
from ..backend import get_backend, to_numpy
from ..checks import check_int, check_number
from ..nn.boundary import inside
from ..training.loop.inputs import evaluation_mode
from .rows import DeviceRows

#: sklearn's activation names and the gpunet layers they mean.
ACTIVATIONS = {"identity": None, "logistic": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
SOLVERS = ("adam", "sgd")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
MIN_ADAPTIVE_LR = 1e-6   # learning_rate="adaptive" stops once the rate is this low (sklearn's)
FLOATS = (np.float64, np.float32)
PREDICT_ROWS = 256       # rows of every prediction batch (see BaseMLP._outputs)
SPARSE = "csr"           # sparse input is taken as CSR (other formats are converted)
DTYPES = ("float32", "float64")


def _is_dtype(value) -> bool:
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True


def _one_of(value, name, allowed, hint=""):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}{hint}")
    return value


class BaseMLP(BaseEstimator):
    """A multi-layer perceptron estimator trained by gpunet on ``device``; the parameters
    mean what they mean in ``sklearn.neural_network``."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dtype=None,
                 device="auto"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.device = device

    # -- the parameters and the network they describe --------------------------------------
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, (int, np.integer)) and not isinstance(sizes, bool):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes must be a tuple of positive integers, got "
                             f"{self.hidden_layer_sizes!r}") from None
        return [check_int(s, "each of hidden_layer_sizes", 1) for s in sizes]

    def _check_params(self):
        """Every parameter checked (the error names it, what it expects and what came)."""
        _one_of(self.activation, "activation", ACTIVATIONS)
        _one_of(self.solver, "solver", SOLVERS, " (gpunet trains with mini-batches; for "
                "L-BFGS use sklearn.neural_network)")
        _one_of(self.learning_rate, "learning_rate", LEARNING_RATES)
        if self.batch_size != "auto":
            check_int(self.batch_size, "batch_size ('auto' or an integer)", 1)
        check_number(self.alpha, "alpha", 0)
        check_number(self.learning_rate_init, "learning_rate_init", 0, low_open=True)
        check_number(self.power_t, "power_t", 0)
        check_int(self.max_iter, "max_iter", 1)
        check_number(self.tol, "tol", 0)
        check_number(self.momentum, "momentum", 0, 1)
        check_number(self.validation_fraction, "validation_fraction", 0, 1, low_open=True,
                     high_open=True)
        check_number(self.beta_1, "beta_1", 0, 1, high_open=True)
        check_number(self.beta_2, "beta_2", 0, 1, high_open=True)
        check_number(self.epsilon, "epsilon", 0, low_open=True)
        check_int(self.n_iter_no_change, "n_iter_no_change", 1)
        if self.dtype is not None:
            _one_of(str(np.dtype(self.dtype)) if _is_dtype(self.dtype) else self.dtype,
                    "dtype", DTYPES, " (or None: X's float dtype)")
        return get_backend(self.device), self._hidden_sizes()

    def _batch(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if not 1 <= self.batch_size <= n:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {n} samples; "
                          f"using {n}", UserWarning, stacklevel=4)
        return min(self.batch_size, n)

    def _build(self, backend, sizes, n_in, n_out):
        """Linear + activation per hidden size, then a Linear to the outputs; weights drawn
        from the estimator's own generator (``random_state``), biases zero."""
        widths, layers = [n_in, *sizes], []
        act = ACTIVATIONS[self.activation]
        for a, b in zip(widths, widths[1:]):
            layers.append(nn.Linear(a, b))
            if act is not None:
                layers.append(act())
        layers.append(nn.Linear(widths[-1], n_out))
        model = nn.Sequential(*layers)
        seed_rng = np.random.default_rng(self._random_state.randint(2**31))
        for layer in model:
            if isinstance(layer, nn.Linear):
                layer.reset_weight(layer.init, seed_rng)
        return model.to(backend, self._dtype)

    def _optimizer(self, batch):
        params = self.model_.parameters()
        decay = self.alpha / batch   # sklearn adds alpha * W / (the batch's weight) to the
        # mean gradient: set again for every batch (see _epoch)
        if self.solver == "sgd":
            return optim.SGD(params, lr=self.learning_rate_init, momentum=self.momentum,
                             nesterov=self.nesterovs_momentum and self.momentum > 0,
                             weight_decay=decay)
        return optim.Adam(params, lr=self.learning_rate_init,
                          betas=(self.beta_1, self.beta_2), eps=self.epsilon,
                          weight_decay=decay)

    # -- training -------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight, incremental, **target_options):
        backend, sizes = self._check_params()
        first = not hasattr(self, "model_") or not (incremental or self.warm_start)
        X, y = validate_data(self, X, y, reset=first, dtype=FLOATS, accept_sparse=SPARSE,
                             **self._y_validation)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        y, n_out = self._targets(y, first, incremental, **target_options)
        sample_weight = self._class_weighted(y, sample_weight, incremental)
        batch = self._batch(X.shape[0])
        if first:
            self._start(backend, sizes, X, n_out)
        if first or not incremental:   # fit, warm or not, starts a new optimizer (sklearn)
            self.optimizer_ = self._optimizer(batch)
        self.n_iter_ = 0               # the iterations of this call (sklearn 1.9)
        val = None
        if self.early_stopping and not incremental:
            weighted = [] if sample_weight is None else [sample_weight]
            X, X_val, y, y_val, *weights = train_test_split(
                X, y, *weighted, random_state=self._random_state,
                test_size=self.validation_fraction, stratify=self._stratify(y))
            sample_weight, val = (weights[0], (X_val, y_val, weights[1])) if weights \
                else (None, (X_val, y_val, None))
        device = self.model_.backend
        rows = DeviceRows(X, device, self._dtype)
        self._train(rows, device.asarray(self._loss_targets(y)), sample_weight, batch, val,
                    incremental)
        return self

    def _start(self, backend, sizes, X, n_out):
        """A first fit: the network and the state scikit-learn initialises."""
        self._random_state = check_random_state(self.random_state)
        self._dtype = np.dtype(self.dtype if self.dtype is not None else X.dtype)
        self.model_ = self._build(backend, sizes, X.shape[1], n_out)
        self.n_outputs_, self.n_layers_ = n_out, len(sizes) + 2
        self.out_activation_ = self._out_activation(n_out)
        self.t_, self.loss_curve_, self._no_improvement_count = 0, [], 0
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _train(self, rows, y, sample_weight, batch, val, incremental):
        loss_fn = self._loss()
        for _ in range(1 if incremental else self.max_iter):
            loss = self._epoch(rows, y, sample_weight, batch, loss_fn)
            self.n_iter_ += 1
            self.t_ += len(rows)
            self.loss_curve_.append(loss)
            self.loss_ = loss
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            self._count_no_improvement(loss, val)
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                self.optimizer_.lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            if self._no_improvement_count > self.n_iter_no_change:
                if self._stop():
                    break
                self._no_improvement_count = 0
        else:
            if not incremental:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                              f"reached and the optimization hasn't converged yet.",
                              ConvergenceWarning, stacklevel=4)
        if val is not None:
            self.model_.load_state_dict(self._best_state)

    def _epoch(self, rows, y, sample_weight, batch, loss_fn):
        """One pass over ``rows`` and the device targets ``y``, reshuffled by
        ``random_state``: the mean training loss (each batch's weighted mean, counted by its
        rows, as sklearn), read to the host once. ``sample_weight``: host weights or None;
        the L2 decay of a batch is ``alpha`` over its weight (its rows without weights); a
        batch whose weights are all zero moves nothing."""
        model, opt, n = self.model_, self.optimizer_, len(rows)
        order = self._random_state.permutation(n) if self.shuffle else np.arange(n)
        device_order = model.backend.asarray(order)
        weights = None if sample_weight is None else model.backend.asarray(sample_weight,
                                                                             dtype=self._dtype)
        total = model.backend.xp.zeros((), dtype=np.float64)
        model.train()
        with inside():
            for start in range(0, n, batch):
                index = device_order[start:start + batch]
                xb, yb = rows.take(index), y[index]
                if weights is None:
                    opt.weight_decay = self.alpha / len(index)
                    total += loss_fn(model(xb), yb) * len(index)
                else:
                    batch_weight = float(sample_weight[order[start:start + batch]].sum())
                    if batch_weight == 0:
                        continue
                    opt.weight_decay = self.alpha / batch_weight
                    total += loss_fn(model(xb), yb, weights[index]) * len(index)
                model.backward(loss_fn.backward(), input_grad=False)
                opt.step()
        model.backend.ops.check_errors()
        loss = float(total) / n
        if not math.isfinite(loss):
            raise ValueError(f"the training loss became {loss} at iteration {self.n_iter_ + 1}; "
                             f"scale the features (e.g. StandardScaler) or lower "
                             f"learning_rate_init (now {self.optimizer_.lr:g})")
        return loss

    def _count_no_improvement(self, loss, val):
        """sklearn's rule: an epoch that does not beat the best by ``tol`` counts; with a
        validation set the best weights are kept."""
        if val is None:
            self._no_improvement_count = (self._no_improvement_count + 1
                                          if loss > self.best_loss_ - self.tol else 0)
            self.best_loss_ = min(self.best_loss_, loss)
            return
        score = self._validation_score(self._outputs(val[0]), val[1], val[2])
        self.validation_scores_.append(score)
        self._no_improvement_count = (self._no_improvement_count + 1
                                      if score < self.best_validation_score_ + self.tol else 0)
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_state = self.model_.state_dict()

    def _stop(self):
        """Whether to stop after ``n_iter_no_change`` epochs without improvement
        (``learning_rate="adaptive"`` first divides the rate by 5, down to 1e-6)."""
        what = "Validation score" if self.early_stopping else "Training loss"
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        if adaptive and self.optimizer_.lr > MIN_ADAPTIVE_LR:
            self.optimizer_.lr = self.optimizer_.lr / 5
            if self.verbose:
                print(f"Setting learning rate to {self.optimizer_.lr:f}")
            return False
        if self.verbose:
            print(f"{what} did not improve more than tol={self.tol:f} for "
                  f"{self.n_iter_no_change} consecutive epochs. Stopping.")
        return True

    # -- predicting -----------------------------------------------------------------------
    def _outputs(self, X):
        """The network's outputs for the validated host array or CSR matrix ``X``, as a
        float64 host array.

        Every sample goes through a batch of exactly :data:`PREDICT_ROWS` rows (the last one
        padded), densified on the device, so the GEMMs have one shape and a sample's outputs
        do not depend on the other samples of the call (float32 GEMMs of other shapes may
        round differently)."""
        model, n = self.model_, X.shape[0]
        rows, xp = DeviceRows(X, model.backend, self._dtype), model.backend.xp
        parts = []
        with evaluation_mode(model):
            for start in range(0, n, PREDICT_ROWS):
                index = xp.arange(start, min(start + PREDICT_ROWS, n))
                batch = rows.take(index)
                if len(index) < PREDICT_ROWS:
                    padded = xp.zeros((PREDICT_ROWS, X.shape[1]), dtype=self._dtype)
                    padded[:len(index)] = batch
                    batch = padded
                parts.append(to_numpy(model(batch))[:len(index)])
        return np.concatenate(parts).astype(np.float64)

    def _forward(self, X):
        check_is_fitted(self)
        return self._outputs(validate_data(self, X, reset=False, dtype=FLOATS,
                                           accept_sparse=SPARSE))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True   # CSR (other formats converted), densified by batch
        return tags

    @property
    def coefs_(self):
        """The weight matrices as sklearn lays them out, (fan_in, fan_out); copies."""
        return [to_numpy(layer.weight.data).T.copy() for layer in self._linears()]

    @property
    def intercepts_(self):
        """The bias vectors; copies."""
        return [to_numpy(layer.bias.data).copy() for layer in self._linears()]

    def _linears(self):
        check_is_fitted(self)
        return [layer for layer in self.model_ if isinstance(layer, nn.Linear)]
