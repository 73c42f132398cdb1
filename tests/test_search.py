"""``gpunet.sklearn.MLPSearchCV``: GridSearchCV's results and attributes, each candidate x
fold trained in a stack as GridSearchCV trains it alone."""
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is an optional extra")
import sklearn.base  # noqa: E402
import sklearn.model_selection  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import gpunet as gn  # noqa: E402
from gpunet.sklearn import MLPClassifier, MLPRegressor, MLPSearchCV  # noqa: E402
from gpunet.sklearn import search_fit  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X)[:450], y[:450]


def _both(estimator, grid, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPSearchCV(estimator, grid, **kwargs).fit(X, y)
        theirs = GridSearchCV(estimator, grid, **kwargs).fit(X, y)
    return ours, theirs


def _same_results(ours, theirs, test_rows):
    assert list(ours.cv_results_) == list(theirs.cv_results_)
    for key, value in theirs.cv_results_.items():
        if key.startswith("param_"):
            assert ours.cv_results_[key].dtype == value.dtype, key
            assert list(ours.cv_results_[key]) == list(value), key
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    for split in range(theirs.n_splits_):  # each fit as alone: at most a sample's rounding
        key = f"split{split}_test_score"
        np.testing.assert_allclose(ours.cv_results_[key], theirs.cv_results_[key],
                                   atol=1.01 / test_rows, err_msg=key)
    assert ours.n_splits_ == theirs.n_splits_


GRIDS = {
    "adam": (MLPClassifier((24,), max_iter=12, batch_size=64, random_state=0, device="cpu"),
             {"alpha": [1e-4, 1e-1], "learning_rate_init": [1e-3, 1e-2],
              "tol": [1e-4, 0.3]}),
    "sgd": (MLPClassifier((24,), solver="sgd", max_iter=12, batch_size=64, random_state=0,
                          n_iter_no_change=2, tol=0.05, device="cpu"),
            {"learning_rate": ["constant", "invscaling", "adaptive"],
             "momentum": [0.0, 0.9], "learning_rate_init": [0.01, 0.1]}),
    "architectures": (MLPClassifier(max_iter=8, batch_size=100, device="cpu"),
                      [{"hidden_layer_sizes": [(16,), (16, 8)], "random_state": [0, 1]},
                       {"hidden_layer_sizes": [(8,)], "activation": ["tanh", "logistic"],
                        "random_state": [2],
                        "max_iter": [3, 8]}]),
}


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_the_search_scores_every_candidate_as_grid_search_cv(digits, name):
    estimator, grid = GRIDS[name]
    X, y = digits
    ours, theirs = _both(estimator, grid, X, y, cv=3)
    _same_results(ours, theirs, 150)
    assert ours.best_params_ == theirs.best_params_
    assert ours.best_score_ == pytest.approx(theirs.best_score_, abs=1.01 / 150)
    assert ours.best_index_ == theirs.best_index_
    assert (ours.predict(X) == theirs.predict(X)).all()  # the same refit
    assert ours.refit_time_ > 0 and ours.scorer_ is not None


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_each_fit_of_a_stack_is_the_estimators_own_fit(digits, monkeypatch, name):
    """Loss curves, iterations and stops as each estimator fitted alone, also after the
    models still training move to a stack of their own (half of them stop at 4 epochs)."""
    estimator, grid = GRIDS[name]
    grid = {**grid, "max_iter": [4, 12]}
    stacks_made = []
    init = search_fit._Training.__init__

    def counting(self, members, *args, **kwargs):
        stacks_made.append(len(members))
        init(self, members, *args, **kwargs)

    monkeypatch.setattr(search_fit._Training, "__init__", counting)
    X, y = digits
    X = X.astype(np.float32)
    train = np.arange(0, 450, 3)
    stacks, alone = {}, []
    for c, params in enumerate(sklearn.model_selection.ParameterGrid(grid)):
        candidate = sklearn.base.clone(estimator).set_params(n_iter_no_change=2, **params)
        key = search_fit.stack_key(candidate, len(train), np.arange(10))
        stacks.setdefault(key, []).append(search_fit.Member(c, 0, candidate, train))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            alone.append(sklearn.base.clone(candidate).fit(X[train], y[train]))
    backend = gn.get_backend("cpu")
    members = [m for group in stacks.values() for m in group]
    for group in stacks.values():
        search_fit.fit_stack(group, X, y.astype(np.int64), 10, backend)
    assert len(members) == len(alone) and len(stacks) == (2 if name == "sgd" else 1)
    iterations = [m.n_iter for m in members]
    assert min(iterations) < max(iterations) == 12, "no fit stopped early"
    assert len(stacks_made) > len(stacks), f"no stack was compacted: {stacks_made}"
    for member in members:
        fitted = alone[member.candidate]
        assert member.n_iter == fitted.n_iter_, member.estimator
        np.testing.assert_allclose(member.loss_curve, fitted.loss_curve_, rtol=1e-4,
                                   err_msg=str(member.estimator))


def test_string_labels_scoring_and_a_splitter(digits):
    X, y = digits
    names = np.array(list("abcdefghij"))[y]
    estimator = MLPClassifier((16,), max_iter=5, random_state=0, device="cpu")
    grid = {"learning_rate_init": [1e-3, 1e-2]}
    ours, theirs = _both(estimator, grid, X, names, scoring="balanced_accuracy",
                         cv=KFold(3, shuffle=True, random_state=0))
    _same_results(ours, theirs, 150)
    assert set(ours.predict(X[:20])) <= set("abcdefghij")
    assert ours.score(X, names) == pytest.approx(theirs.score(X, names))
    np.testing.assert_allclose(ours.predict_proba(X[:5]).sum(axis=1), 1, rtol=1e-6)


def test_candidates_sharing_an_architecture_train_in_one_stack(digits, monkeypatch):
    stacks = []
    fit_stack = search_fit.fit_stack

    def counting(members, *args):
        stacks.append(len(members))
        return fit_stack(members, *args)

    monkeypatch.setattr("gpunet.sklearn.search.fit_stack", counting)
    X, y = digits
    estimator = MLPClassifier((16,), max_iter=3, batch_size=50, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPSearchCV(estimator, {"alpha": [1e-4, 1e-3, 1e-2], "hidden_layer_sizes": [(16,), (8,)]},
                    cv=KFold(3)).fit(X, y)
    assert sorted(stacks) == [9, 9]  # 3 candidates x 3 folds per architecture


def test_refit_false_and_errors(digits):
    X, y = digits
    estimator = MLPClassifier((8,), max_iter=2, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = MLPSearchCV(estimator, {"alpha": [1e-4]}, cv=2, refit=False).fit(X, y)
    assert not hasattr(search, "best_estimator_") and search.best_params_ == {"alpha": 1e-4}
    with pytest.raises(AttributeError, match="refit=False"):
        search.predict(X)
    with pytest.raises(TypeError, match="searches a gpunet.sklearn.MLPClassifier"):
        MLPSearchCV(MLPRegressor(device="cpu"), {"alpha": [1e-4]}).fit(X, y.astype(float))
    with pytest.raises(ValueError, match="early_stopping=True"):
        MLPSearchCV(estimator, {"early_stopping": [True]}, cv=2).fit(X, y)
    with pytest.raises(ValueError, match="learning_rate_init must be"):
        MLPSearchCV(estimator, {"learning_rate_init": [-1.0]}, cv=2).fit(X, y)
    with pytest.raises(ValueError, match="class_weight"):
        MLPSearchCV(estimator, {"class_weight": ["balanced"]}, cv=2).fit(X, y)
    with pytest.raises(ValueError, match="3 or more classes"):
        MLPSearchCV(estimator, {"alpha": [1e-4]}, cv=2).fit(X, y % 2)
