"""gpunet.sklearn as scikit-learn 1.9's MLP does it: n_iter_ per call, one logistic output for
two classes, sparse input densified a batch at a time, sample_weight in fit, partial_fit and
score (and through GridSearchCV), and beyond sklearn's MLP: class_weight; the network's
dtype follows X's as sklearn's does."""
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is an optional extra: "
                                      'pip install -e ".[sklearn]"')
import scipy.sparse as sp  # noqa: E402  (scikit-learn's dependency)
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.neural_network import MLPClassifier as SklearnMLP  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import gpunet as gn  # noqa: E402
from gpunet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from gpunet.sklearn.rows import DeviceRows  # noqa: E402


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _counters(est):
    return est.n_iter_, est.t_, len(est.loss_curve_)


def test_n_iter_counts_each_call_as_sklearn_does(digits):
    X, y = digits
    same = dict(hidden_layer_sizes=(8,), tol=0.0, random_state=0)
    ours, theirs = MLPClassifier(device="cpu", **same), SklearnMLP(**same)
    for est in (ours, theirs):
        est.set_params(warm_start=True, max_iter=4).fit(X, y)
    assert _counters(ours) == _counters(theirs) == (4, 4 * len(X), 4)
    for est in (ours, theirs):
        est.set_params(max_iter=3).fit(X, y)
    assert _counters(ours) == _counters(theirs) == (3, 7 * len(X), 7)
    ours, theirs = MLPClassifier(device="cpu", **same), SklearnMLP(**same)
    for _ in range(3):
        for est in (ours, theirs):
            est.partial_fit(X[:500], y[:500], classes=np.arange(10))
        assert _counters(ours) == _counters(theirs)
    assert ours.n_iter_ == 1 and ours.t_ == 1500


def test_two_classes_get_one_logistic_output_as_in_sklearn(cancer):
    X, y = cancer
    ours = MLPClassifier((16,), max_iter=100, random_state=0, device="cpu").fit(X, y)
    theirs = SklearnMLP((16,), max_iter=100, random_state=0).fit(X, y)
    assert ours.n_outputs_ == theirs.n_outputs_ == 1
    assert ours.out_activation_ == theirs.out_activation_ == "logistic"
    assert [c.shape for c in ours.coefs_] == [c.shape for c in theirs.coefs_] == [(30, 16),
                                                                                   (16, 1)]
    proba = ours.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), ours.classes_[(proba[:, 1] > 0.5) * 1])
    np.testing.assert_allclose(ours.predict_log_proba(X), np.log(proba), rtol=1e-7, atol=1e-12)
    assert ours.score(X, y) > 0.97 and theirs.score(X, y) > 0.97
    words = np.where(y == 1, "yes", "no")      # sorted as 0 and 1 are: the same training
    named = MLPClassifier((16,), max_iter=100, random_state=0, device="cpu").fit(X, words)
    np.testing.assert_array_equal(named.predict(X) == "yes", ours.predict(X) == 1)


def test_binary_partial_fit_and_early_stopping(cancer):
    X, y = cancer
    clf = MLPClassifier((16,), learning_rate_init=0.01, random_state=0, device="cpu")
    for _ in range(5):
        clf.partial_fit(X, y, classes=[0, 1])
    assert clf.n_outputs_ == 1 and clf.score(X, y) > 0.9
    stopped = MLPClassifier((16,), early_stopping=True, n_iter_no_change=3,
                            learning_rate_init=0.01, random_state=0, device="cpu").fit(X, y)
    assert stopped.best_validation_score_ == max(stopped.validation_scores_) > 0.9


def test_sparse_input_trains_as_the_dense_array_a_batch_at_a_time(digits, monkeypatch):
    X, y = digits
    X = np.where(np.abs(X) > 1, X, 0.0)      # mostly zeros
    dense = MLPClassifier((32,), max_iter=5, random_state=0, device="cpu").fit(X, y)
    sizes = []
    real = DeviceRows._densified

    def recorded(self, rows):
        sizes.append(len(rows))
        return real(self, rows)

    def refuse(*args, **kwargs):
        raise AssertionError("the whole sparse matrix was densified")

    monkeypatch.setattr(DeviceRows, "_densified", recorded)
    for kind in (sp.csr_matrix, sp.csr_array):
        monkeypatch.setattr(kind, "toarray", refuse)
        monkeypatch.setattr(kind, "todense", refuse)
    for matrix in (sp.csr_matrix(X), sp.csr_array(X), sp.csc_matrix(X).tocsc()):
        sizes.clear()
        sparse = MLPClassifier((32,), max_iter=5, random_state=0, device="cpu").fit(matrix, y)
        np.testing.assert_array_equal(sparse.predict_proba(matrix), dense.predict_proba(X))
        assert max(sizes) <= 256 and sum(sizes) > 5 * len(X)   # batches of 200, predictions 256
    reg = MLPRegressor((8,), max_iter=3, random_state=0, device="cpu")
    reg.fit(sp.csr_matrix(X), y.astype(float))
    assert reg.predict(sp.csr_matrix(X)).shape == (len(X),)


def test_csr_rows_are_densified_on_the_device_as_toarray_would(backend):
    rng = np.random.default_rng(0)
    matrix = sp.random(300, 17, density=0.15, format="csr", random_state=0)
    dense = matrix.toarray()
    rows = DeviceRows(matrix, backend, np.float64)
    for index in (np.array([5, 0, 299, 5]), rng.permutation(300)[:123], np.arange(0)):
        got = rows.take(backend.asarray(index))
        np.testing.assert_array_equal(gn.to_numpy(got), dense[index])
    doubled = sp.csr_matrix((np.array([1.0, 2.0, 4.0]), np.array([3, 3, 0]),
                             np.array([0, 2, 3])), shape=(2, 5))   # row 0 holds column 3 twice
    assert not doubled.has_canonical_format
    np.testing.assert_array_equal(DeviceRows(doubled, gn.get_backend("cpu"), np.float64)
                                  .take(np.arange(2)), doubled.toarray())


def test_sample_weight_in_fit_partial_fit_and_score(digits):
    X, y = digits
    w = np.where(y < 5, 2.0, 0.5)
    clf = MLPClassifier((32,), max_iter=10, random_state=0, device="cpu")
    clf.fit(X, y, sample_weight=w)
    plain = MLPClassifier((32,), max_iter=10, random_state=0, device="cpu").fit(X, y)
    assert not np.array_equal(clf.coefs_[0], plain.coefs_[0])
    assert clf.score(X, y, sample_weight=w) == pytest.approx(
        np.average(clf.predict(X) == y, weights=w))
    clf.partial_fit(X, y, sample_weight=w)
    assert clf.n_iter_ == 1
    reg = MLPRegressor((8,), max_iter=5, random_state=0, device="cpu")
    reg.fit(X, y.astype(float), sample_weight=w).partial_fit(X, y.astype(float), sample_weight=w)
    assert np.isfinite(reg.score(X, y.astype(float), sample_weight=w))


def test_zero_weights_train_as_if_the_samples_were_absent(digits):
    X, y = digits
    keep = np.arange(len(X)) % 4 != 0
    same = dict(hidden_layer_sizes=(16,), max_iter=5, shuffle=False, random_state=0,
                device="cpu")                  # full batches: the same gradient steps
    weighted = MLPClassifier(batch_size=len(X), **same).fit(X, y, sample_weight=keep * 1.0)
    subset = MLPClassifier(batch_size=keep.sum(), **same).fit(X[keep], y[keep])
    np.testing.assert_allclose(weighted.predict_proba(X), subset.predict_proba(X), rtol=1e-9)


def test_grid_search_passes_sample_weight_through(digits):
    X, y = digits
    w = np.where(y == 3, 0.0, 1.0)
    search = GridSearchCV(MLPClassifier(max_iter=5, random_state=0, device="cpu"),
                          {"alpha": [1e-4, 1e-2]}, cv=2)
    search.fit(X[:600], y[:600], sample_weight=w[:600])
    unweighted = MLPClassifier(max_iter=5, random_state=0, alpha=search.best_params_["alpha"],
                               device="cpu").fit(X[:600], y[:600])
    assert not np.array_equal(search.best_estimator_.coefs_[0], unweighted.coefs_[0])


def test_sample_weight_with_early_stopping_weighs_the_validation_score(digits):
    X, y = digits
    w = np.where(y == 0, 0.0, 1.0)            # class 0 counts for nothing
    clf = MLPClassifier((16,), early_stopping=True, max_iter=15, random_state=0,
                        device="cpu").fit(X, y, sample_weight=w)
    assert len(clf.validation_scores_) == clf.n_iter_


def test_sample_weight_errors(digits):
    X, y = digits
    clf = MLPClassifier(max_iter=2, device="cpu")
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        clf.fit(X, y, sample_weight=-np.ones(len(X)))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(5,\), expected "
                                         r"\(1797,\)"):
        clf.fit(X, y, sample_weight=np.ones(5))


def test_class_weight_balanced_and_dict(cancer):
    X, y = cancer
    rare = np.flatnonzero(y == 0)[::6]              # keep a sixth of the malignant samples
    keep = np.sort(np.concatenate([rare, np.flatnonzero(y == 1)]))
    X, y = X[keep], y[keep]

    def recall_of_rare(**params):
        clf = MLPClassifier((4,), max_iter=10, learning_rate_init=3e-3, random_state=0,
                            device="cpu", **params).fit(X, y)
        return np.mean(clf.predict(X[y == 0]) == 0), clf

    plain, _ = recall_of_rare()
    balanced, clf = recall_of_rare(class_weight="balanced")
    assert balanced > plain
    counts = np.bincount(y)
    as_dict, _ = recall_of_rare(class_weight={0: len(y) / (2 * counts[0]),
                                              1: len(y) / (2 * counts[1])})
    assert as_dict == balanced
    by_samples = MLPClassifier((4,), max_iter=10, learning_rate_init=3e-3, random_state=0,
                               device="cpu").fit(X, y, sample_weight=(len(y) / (2 * counts))[y])
    np.testing.assert_array_equal(by_samples.predict_proba(X), clf.predict_proba(X))


def test_class_weight_errors(cancer):
    X, y = cancer
    with pytest.raises(ValueError, match="class_weight must be None, 'balanced' or a dict"):
        MLPClassifier(class_weight="heavy", device="cpu").fit(X, y)
    with pytest.raises(ValueError, match="not supported for partial_fit"):
        MLPClassifier(class_weight="balanced", device="cpu").partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match=r"The classes, \[0, 1\], are not in class_weight"):
        MLPClassifier(class_weight={7: 2.0}, max_iter=1, device="cpu").fit(X, y)
    MLPClassifier(class_weight={0: 3.0}, max_iter=1, device="cpu").partial_fit(
        X, y, classes=[0, 1])   # a dict serves partial_fit


def test_the_network_dtype_follows_x_unless_given(digits):
    X, y = digits
    for data, dtype, want in ((X, None, np.float64), (X.astype(np.float32), None, np.float32),
                              (X, "float32", np.float32)):
        clf = MLPClassifier((8,), max_iter=2, dtype=dtype, device="cpu").fit(data, y)
        assert clf.model_.dtype == want and clf.coefs_[0].dtype == want
        assert clf.predict_proba(X).dtype == np.float64
    with pytest.raises(ValueError, match=r"dtype must be one of \['float32', 'float64'\], "
                                         r"got 'float16'"):
        MLPClassifier(dtype="float16", device="cpu").fit(X, y)


def test_without_early_stopping_validation_attributes_are_none_as_in_sklearn(digits):
    X, y = digits
    ours = MLPClassifier((8,), max_iter=2, device="cpu").fit(X, y)
    theirs = SklearnMLP((8,), max_iter=2).fit(X, y)
    assert ours.validation_scores_ is theirs.validation_scores_ is None
    assert ours.best_validation_score_ is theirs.best_validation_score_ is None
