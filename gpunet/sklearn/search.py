"""``MLPSearchCV``: scikit-learn's grid search over a gpunet ``MLPClassifier``, with every
candidate x fold that shares an architecture trained together as one stack
(``search_fit.py``), and ``GridSearchCV``'s attributes and ``cv_results_`` keys."""
from __future__ import annotations

import time
import warnings

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring
from sklearn.model_selection import ParameterGrid, check_cv
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from .estimators import MLPClassifier
from .search_fit import Member, fit_stack, stack_key


class MLPSearchCV(MetaEstimatorMixin, BaseEstimator):
    """Exhaustive search over ``param_grid`` for a gpunet :class:`MLPClassifier`, scored by
    cross-validation as ``sklearn.model_selection.GridSearchCV`` scores it (``cv``: folds or
    a splitter, stratified by default; ``scoring``: None for the estimator's accuracy, a
    scorer name or a callable), with the same results: ``cv_results_`` (its keys),
    ``best_index_``, ``best_params_``, ``best_score_``, ``best_estimator_`` (refit on all
    the data when ``refit``), ``refit_time_``, ``scorer_``, ``n_splits_``, ``classes_``.

    It searches problems of 3 or more classes (two take one logistic output, not stacked),
    without ``class_weight`` or ``early_stopping`` (use GridSearchCV for those). Unlike
    GridSearchCV, the fits run together: the candidates x folds whose networks share
    an architecture (``hidden_layer_sizes``, ``activation``, ``solver``, ``batch_size``, the
    training rows' count) form one stack, trained in one pass over the data, each model as
    its estimator would train alone (its ``random_state``'s weights and shuffles, its own
    learning rate, ``alpha``, momentum, betas, ``tol``, ``max_iter`` ...). A candidate's
    ``fit_time`` is its stack's time shared equally among the stack's models.
    """

    def __init__(self, estimator, param_grid, *, cv=5, scoring=None, refit=True):
        self.estimator = estimator
        self.param_grid = param_grid
        self.cv = cv
        self.scoring = scoring
        self.refit = refit

    def fit(self, X, y, groups=None):
        """Search on ``X``, ``y`` (``groups`` for a group-aware ``cv``); returns self."""
        if not isinstance(self.estimator, MLPClassifier):
            raise TypeError(f"MLPSearchCV searches a gpunet.sklearn.MLPClassifier, got "
                            f"{type(self.estimator).__name__}; for other estimators use "
                            f"sklearn.model_selection.GridSearchCV")
        X = check_array(X, accept_sparse=True, dtype=(np.float64, np.float32))
        X = np.asarray(X.toarray() if hasattr(X, "toarray") else X)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if len(y) != len(X):
            raise ValueError(f"X and y must have the same number of samples, got {len(X)} "
                             f"and {len(y)}")
        if len(np.unique(y)) < 3:
            raise ValueError("MLPSearchCV trains problems of 3 or more classes as stacks (two "
                             "classes take one logistic output); use GridSearchCV for them")
        candidates = list(ParameterGrid(self.param_grid))
        folds = list(check_cv(self.cv, y, classifier=True).split(X, y, groups))
        self.scorer_ = check_scoring(self.estimator, self.scoring)
        self.multimetric_ = False
        self.n_splits_ = len(folds)
        scores, fit_times, score_times = (np.full((len(candidates), len(folds)), np.nan)
                                          for _ in range(3))
        stacks: dict = {}
        for c, params in enumerate(candidates):
            estimator = clone(self.estimator).set_params(**params)
            estimator._check_params()  # a bad value fails here, naming the parameter
            if estimator.early_stopping or estimator.class_weight is not None:
                raise ValueError(f"candidate {params} has early_stopping=True or a "
                                 f"class_weight, which MLPSearchCV does not train; use "
                                 f"GridSearchCV for it")
            for f, (train, _) in enumerate(folds):
                key = stack_key(estimator, len(train), np.unique(y[train]))
                stacks.setdefault(key, []).append(Member(c, f, estimator, train))
        unconverged = 0
        for (_, _, classes), members in stacks.items():
            classes = np.asarray(classes, dtype=y.dtype)
            unconverged += self._fit_one_stack(members, X, y, classes, folds, scores,
                                               fit_times, score_times)
        if unconverged:
            warnings.warn(f"{unconverged} of {len(candidates) * len(folds)} fits reached "
                          f"their max_iter without converging", ConvergenceWarning,
                          stacklevel=2)
        self.cv_results_ = _results(candidates, scores, fit_times, score_times)
        self.best_index_ = int(self.cv_results_["rank_test_score"].argmin())
        self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
        self.best_params_ = candidates[self.best_index_]
        if self.refit:
            started = time.perf_counter()
            self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.best_estimator_.fit(X, y)
            self.refit_time_ = time.perf_counter() - started
        self.classes_ = np.unique(y)
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_one_stack(self, members, X, y, classes, folds, scores, fit_times, score_times):
        """Train one stack and score its models on their folds; returns how many of them
        reached max_iter unconverged."""
        first = members[0].estimator
        backend, _ = first._check_params()
        dtype = np.dtype(first.dtype if first.dtype is not None else X.dtype)  # as fit's
        codes = np.searchsorted(classes, y).clip(0, len(classes) - 1)
        seconds = fit_stack(members, backend.asarray(X, dtype=dtype),
                            backend.asarray(codes.astype(np.int64)), len(classes), backend)
        for member in members:
            fitted = _fitted(member, classes, X.shape[1], dtype)
            test = folds[member.fold][1]
            started = time.perf_counter()
            scores[member.candidate, member.fold] = self.scorer_(fitted, X[test], y[test])
            score_times[member.candidate, member.fold] = time.perf_counter() - started
            fit_times[member.candidate, member.fold] = seconds / len(members)
        return sum(not m.converged for m in members)

    # -- the refit best estimator, as GridSearchCV offers it --------------------------------
    def _best(self):
        check_is_fitted(self)
        if not self.refit:
            raise AttributeError("this MLPSearchCV was fitted with refit=False: it has no "
                                 "best_estimator_ to predict with")
        return self.best_estimator_

    def predict(self, X):
        return self._best().predict(X)

    def predict_proba(self, X):
        return self._best().predict_proba(X)

    def predict_log_proba(self, X):
        return self._best().predict_log_proba(X)

    def score(self, X, y):
        """The score of the best estimator (with this search's ``scoring``)."""
        return self.scorer_(self._best(), X, y)


def _fitted(member, classes, n_features, dtype):
    """The member's estimator, fitted with the model the stack trained: what predicting and
    scoring read (``model_``, its dtype, ``classes_``, ``n_features_in_``, ``n_outputs_``),
    with its ``n_iter_`` and ``loss_curve_``."""
    estimator = member.estimator.__sklearn_clone__()
    estimator.model_, estimator._dtype = member.model, dtype
    estimator.out_activation_ = "softmax"
    estimator.classes_ = classes
    estimator.n_features_in_ = n_features
    estimator.n_outputs_ = len(classes)
    estimator.n_layers_ = len(estimator._hidden_sizes()) + 2
    estimator.n_iter_ = member.n_iter
    estimator.loss_curve_ = list(member.loss_curve)
    return estimator


def _results(candidates, scores, fit_times, score_times):
    """``cv_results_`` with GridSearchCV's keys (one scorer, no training scores)."""
    results = {}
    for name, values in (("fit_time", fit_times), ("score_time", score_times)):
        results[f"mean_{name}"] = values.mean(axis=1)
        results[f"std_{name}"] = values.std(axis=1)
    for name in dict.fromkeys(k for params in candidates for k in params):  # as they come
        given = [params[name] for params in candidates if name in params]
        try:
            inferred = np.array(given)
            dtype = inferred.dtype if inferred.dtype.kind != "U" and inferred.ndim == 1 \
                else object
        except ValueError:  # sequences of different lengths
            dtype = np.dtype(object)
        column = np.ma.MaskedArray(np.empty(len(candidates), dtype=dtype), mask=True)
        for i, params in enumerate(candidates):
            if name in params:
                column[i] = params[name]
        results[f"param_{name}"] = column
    results["params"] = candidates
    for split in range(scores.shape[1]):
        results[f"split{split}_test_score"] = scores[:, split]
    means = scores.mean(axis=1)
    results["mean_test_score"] = means
    results["std_test_score"] = scores.std(axis=1)
    worst = np.nanmin(means) - 1 if np.isfinite(means).any() else 0
    results["rank_test_score"] = rankdata(-np.nan_to_num(means, nan=worst),
                                          method="min").astype(np.int32)
    return results
