"""The lecture's toy problems: shapes, labels, determinism, and the properties they teach."""
import numpy as np
import pytest

from gpunet import datasets


def _best_linear_accuracy(X, y):
    """Accuracy of the least-squares linear classifier with bias (a stand-in for any line)."""
    A = np.hstack([X, np.ones((len(X), 1))]).astype(np.float64)
    w, *_ = np.linalg.lstsq(A, 2.0 * y - 1.0, rcond=None)
    return np.mean((A @ w > 0) == (y == 1))


def test_xor_truth_table():
    X, y = datasets.xor()
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert X.shape == (4, 2) and y.shape == (4,)
    np.testing.assert_array_equal(y, np.logical_xor(X[:, 0], X[:, 1]).astype(np.int64))


def test_xor_sampled_with_noise():
    X, y = datasets.xor(402, noise=0.1, seed=0)
    assert X.shape == (402, 2) and y.shape == (402,)
    corner = np.rint(X).astype(int)
    np.testing.assert_array_equal(y, corner[:, 0] ^ corner[:, 1])
    assert 0 < np.abs(X - corner).max() < 0.6
    assert np.bincount(y).tolist() == [201, 201]
    np.testing.assert_array_equal(datasets.xor(402, noise=0.1, seed=0)[0], X)


def test_spirals_shapes_balance_and_radius():
    X, y = datasets.spirals(301, noise=0.0, seed=1)
    assert X.shape == (301, 2) and X.dtype == np.float32
    assert y.shape == (301,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [151, 150]
    radius = np.hypot(X[:, 0], X[:, 1])
    assert 0 < radius.min() and radius.max() == pytest.approx(1.0, abs=1e-6)
    assert not np.all(np.diff(y) >= 0)  # shuffled, not class 0 then class 1


def test_spirals_are_not_linearly_separable():
    X, y = datasets.spirals(1000, noise=0.05, seed=2)
    assert _best_linear_accuracy(X, y) < 0.75


def test_the_two_spirals_are_point_reflections_without_noise():
    X, y = datasets.spirals(200, noise=0.0, seed=3)
    a = X[y == 0][np.argsort(np.hypot(*X[y == 0].T))]
    b = X[y == 1][np.argsort(np.hypot(*X[y == 1].T))]
    np.testing.assert_allclose(a, -b, atol=1e-6)  # angle + pi is the point reflection


def test_sine_regression():
    X, y = datasets.sine(500, seed=4)
    assert X.shape == y.shape == (500, 1)
    assert X.dtype == y.dtype == np.float32
    assert -np.pi <= X.min() and X.max() <= np.pi and X.max() - X.min() > 5.5
    np.testing.assert_allclose(y, np.sin(X), atol=1e-6)
    noisy = datasets.sine(500, noise=0.1, seed=4)[1]
    assert 0.05 < np.std(noisy - y) < 0.15


@pytest.mark.parametrize("make", [
    lambda seed: datasets.xor(20, noise=0.2, seed=seed),
    lambda seed: datasets.spirals(50, seed=seed),
    lambda seed: datasets.sine(50, seed=seed),
])
def test_seed_makes_data_reproducible(make):
    X1, y1 = make(7)
    X2, y2 = make(7)
    X3, _ = make(8)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)


@pytest.mark.parametrize("call, message", [
    (lambda: datasets.xor(0), "n must be a positive integer, got 0"),
    (lambda: datasets.xor(2.5), "n must be a positive integer"),
    (lambda: datasets.spirals(1), "n must be an integer >= 2, got 1"),
    (lambda: datasets.spirals(10, noise=-0.1), "noise must be a finite number >= 0"),
    (lambda: datasets.spirals(10, turns=0), "turns must be a finite number > 0, got 0"),
    (lambda: datasets.sine(True), "n must be a positive integer, got True"),
    (lambda: datasets.sine(10, noise=float("nan")), "noise must be a finite number"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
