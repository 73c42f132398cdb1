"""gpunet.sklearn: estimators that pass scikit-learn's own checks and live in its tools."""
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is the sklearn extra: "
                              "pip install -e \".[sklearn]\"")
import joblib  # noqa: E402  (scikit-learn's dependency)
from sklearn.datasets import load_digits, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from gpunet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@parametrize_with_checks([MLPClassifier(device="cpu"), MLPRegressor(device="cpu")])
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def test_string_labels_pipeline_and_probabilities(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])[y]
    model = make_pipeline(StandardScaler(), MLPClassifier((64,), max_iter=30, random_state=0,
                                                          learning_rate_init=0.01,
                                                          device="cpu"))
    model.fit(X[:1500], names[:1500])
    clf = model[-1]
    assert list(clf.classes_) == sorted(set(names))
    assert set(model.predict(X[1500:])) <= set(names)
    assert model.score(X[1500:], names[1500:]) > 0.9
    proba = model.predict_proba(X[1500:])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert clf.n_features_in_ == 64 and clf.n_layers_ == 3 and clf.n_iter_ <= 30
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert [c.shape for c in clf.coefs_] == [(64, 64), (64, 10)]


def test_grid_search_and_cross_validation(digits):
    X, y = digits
    search = GridSearchCV(MLPClassifier(max_iter=15, learning_rate_init=0.01, random_state=0,
                                        device="cpu"),
                          {"hidden_layer_sizes": [(16,), (64,)], "alpha": [1e-4, 1e-2]},
                          cv=2)
    search.fit(X[:600], y[:600])
    assert search.best_params_["hidden_layer_sizes"] in [(16,), (64,)]
    scores = cross_val_score(MLPClassifier((32,), max_iter=30, learning_rate_init=0.01,
                                           random_state=0, device="cpu"),
                             X[:600], y[:600], cv=3)
    assert scores.shape == (3,) and scores.min() > 0.7


def test_parallel_grid_search_pickles_estimators_across_processes(digits):
    X, y = digits
    search = GridSearchCV(MLPClassifier(max_iter=5, random_state=0, device="cpu"),
                          {"learning_rate_init": [1e-3, 1e-2]}, cv=2, n_jobs=2)
    search.fit(X[:300], y[:300])
    assert search.best_score_ > 0.3


def test_joblib_round_trip(digits, tmp_path):
    X, y = digits
    clf = MLPClassifier((32,), max_iter=10, random_state=0, device="cpu").fit(X, y)
    joblib.dump(clf, tmp_path / "clf.joblib")
    loaded = joblib.load(tmp_path / "clf.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    loaded.partial_fit(X, y)   # training goes on from the restored optimizer
    assert loaded.n_iter_ == 1 and loaded.t_ == clf.t_ + len(X)   # n_iter_: this call's
    weights, data, grad, adam_moments = 64 * 32 + 32 * 10 + 42, 1, 1, 2
    size = clf.model_.dtype.itemsize * weights * (data + grad + adam_moments)
    assert len(pickle.dumps(clf)) < size + 20_000


def test_partial_fit_needs_classes_first_then_continues(digits):
    X, y = digits
    clf = MLPClassifier((32,), learning_rate_init=0.01, random_state=0, device="cpu")
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X[:100], y[:100])
    for start in list(range(0, 1500, 300)) * 3:
        clf.partial_fit(X[start:start + 300], y[start:start + 300], classes=np.arange(10))
    assert clf.n_iter_ == 1 and clf.t_ == 15 * 300 and len(clf.loss_curve_) == 15
    assert clf.score(X[1500:], y[1500:]) > 0.8
    with pytest.raises(ValueError, match=r"labels \[10\] that are not in classes_"):
        clf.partial_fit(X[:2], np.array([1, 10]))


def test_early_stopping_keeps_the_best_validation_weights(digits):
    X, y = digits
    clf = MLPClassifier((32,), early_stopping=True, n_iter_no_change=3, max_iter=200,
                        learning_rate_init=0.01, random_state=0, device="cpu").fit(X, y)
    assert clf.n_iter_ < 200 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.9
    assert clf.best_loss_ is None


def test_adaptive_learning_rate_divides_by_five(digits):
    X, y = digits
    clf = MLPClassifier((16,), solver="sgd", learning_rate="adaptive", learning_rate_init=0.1,
                        tol=10.0, n_iter_no_change=1, max_iter=6, random_state=0,
                        device="cpu")
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        clf.fit(X, y)
    # every epoch counts as no improvement; the count passes 1 at epochs 3 and 5
    assert clf.optimizer_.lr == pytest.approx(0.1 / 5 ** 2)


def test_fits_are_reproducible_with_random_state(digits):
    X, y = digits

    def fitted():
        return MLPClassifier((16,), max_iter=3, random_state=7, device="cpu").fit(X, y)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        np.testing.assert_array_equal(fitted().predict_proba(X), fitted().predict_proba(X))


def test_regressor_fits_one_and_several_outputs():
    X, y = make_regression(400, 8, n_targets=2, noise=0.1, random_state=0)
    X = StandardScaler().fit_transform(X)
    y = y / y.std(axis=0)
    reg = MLPRegressor((64,), max_iter=300, learning_rate_init=0.01, random_state=0,
                       device="cpu").fit(X, y)
    assert reg.predict(X).shape == (400, 2) and reg.score(X, y) > 0.95
    one = MLPRegressor((32,), max_iter=50, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one.fit(X, y[:, 0])
    assert one.predict(X).shape == (400,)


@pytest.mark.parametrize("params, match", [
    ({"solver": "lbfgs"}, r"solver must be one of \['adam', 'sgd'\], got 'lbfgs'.*L-BFGS"),
    ({"activation": "gelu"}, r"activation must be one of .*got 'gelu'"),
    ({"hidden_layer_sizes": (10, 0)}, r"each of hidden_layer_sizes must be a positive "
                                      r"integer, got 0"),
    ({"learning_rate_init": 0}, r"learning_rate_init must be a finite number > 0, got 0"),
    ({"batch_size": "big"}, r"batch_size \('auto' or an integer\) must be"),
    ({"device": "tpu"}, r"device must be one of"),
])
def test_bad_parameters_name_what_they_expect(params, match):
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**params).fit(np.zeros((4, 2)), [0, 1, 0, 1])


def test_gpunet_imports_without_sklearn_and_gpunet_sklearn_says_how_to_install():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "import gpunet\n"
            "try:\n    import gpunet.sklearn\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert 'pip install "scikit-learn>=1.6"' in out


def test_an_estimator_trains_and_pickles_on_every_backend(backend, digits):
    X, y = digits
    clf = MLPClassifier((64,), max_iter=20, learning_rate_init=0.01, random_state=0,
                        device=backend.name).fit(X[:1500], y[:1500])
    assert clf.model_.device == backend.name
    assert clf.score(X[1500:], y[1500:]) > 0.9
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
