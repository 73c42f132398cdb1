"""DataLoader: device residency, per-epoch shuffling, batch sizes and bad arguments."""
import numpy as np
import pytest

import gpunet as gn
from gpunet.data.loader import DataLoader


def _dataset(n=50, features=3):
    """Rows whose features encode their index, so pairing of X and y can be checked."""
    y = np.arange(n, dtype=np.int64)
    X = np.repeat(y[:, None], features, axis=1).astype(np.float32) * 10.0
    return X, y


def _epoch(loader):
    """One epoch as NumPy arrays: the list of batch sizes, all X rows, all y values."""
    xs, ys = [], []
    for xb, yb in loader:
        loader.backend.check_array(xb, "xb")
        loader.backend.check_array(yb, "yb")
        xs.append(gn.to_numpy(xb))
        ys.append(gn.to_numpy(yb))
    return [len(b) for b in ys], np.concatenate(xs), np.concatenate(ys)


def test_every_sample_once_per_epoch_with_pairs_intact(backend):
    X, y = _dataset()
    loader = DataLoader(X, y, batch_size=7, device=backend)
    for _ in range(3):
        sizes, xs, ys = _epoch(loader)
        assert sizes == [7] * 7 + [1]
        assert len(loader) == 8
        np.testing.assert_array_equal(np.sort(ys), y)
        np.testing.assert_array_equal(xs, X[ys])


def test_order_changes_between_epochs_and_is_seeded(backend):
    X, y = _dataset()
    gn.manual_seed(5)
    loader = DataLoader(X, y, batch_size=10, device=backend)
    first, second = _epoch(loader)[2], _epoch(loader)[2]
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, y)

    gn.manual_seed(5)
    again = DataLoader(X, y, batch_size=10, device=backend)
    np.testing.assert_array_equal(_epoch(again)[2], first)
    np.testing.assert_array_equal(_epoch(again)[2], second)

    gn.manual_seed(6)
    other = DataLoader(X, y, batch_size=10, device=backend)
    assert not np.array_equal(_epoch(other)[2], first)


def test_drop_last_skips_the_partial_batch(backend):
    X, y = _dataset()
    loader = DataLoader(X, y, batch_size=7, drop_last=True, device=backend)
    assert len(loader) == 7
    sizes, xs, ys = _epoch(loader)
    assert sizes == [7] * 7
    assert len(np.unique(ys)) == 49
    np.testing.assert_array_equal(xs, X[ys])


def test_drop_last_with_one_partial_batch_still_shuffles(backend):
    X, y = _dataset(n=10)
    gn.manual_seed(0)
    loader = DataLoader(X, y, batch_size=6, drop_last=True, device=backend)
    seen = {tuple(_epoch(loader)[2]) for _ in range(5)}
    assert len(loader) == 1 and len(seen) > 1


def test_without_shuffle_batches_are_slices_in_order(backend):
    X, y = _dataset()
    loader = DataLoader(X, y, batch_size=16, shuffle=False, device=backend)
    sizes, xs, ys = _epoch(loader)
    assert sizes == [16, 16, 16, 2]
    np.testing.assert_array_equal(ys, y)
    np.testing.assert_array_equal(xs, X)


@pytest.mark.parametrize("batch_size", [None, 50, 80])
def test_full_batch_is_the_whole_dataset(backend, batch_size):
    X, y = _dataset()
    loader = DataLoader(X, y, batch_size=batch_size, device=backend)
    assert len(loader) == 1
    assert loader.batch_size == (50 if batch_size is None else batch_size)
    sizes, xs, ys = _epoch(loader)
    assert sizes == [50]
    np.testing.assert_array_equal(ys, y)


def test_batch_size_one_is_sgd(backend):
    X, y = _dataset(n=12)
    loader = DataLoader(X, y, batch_size=1, device=backend)
    sizes, xs, ys = _epoch(loader)
    assert len(loader) == 12 and sizes == [1] * 12
    np.testing.assert_array_equal(np.sort(ys), y)
    np.testing.assert_array_equal(xs, X[ys])


def test_numpy_input_moves_to_the_device_once_and_keeps_its_dtype(backend):
    images = np.arange(6 * 4 * 4, dtype=np.uint8).reshape(6, 4, 4)
    targets = np.linspace(-1, 1, 6, dtype=np.float32)[:, None]
    loader = DataLoader(images, targets, batch_size=4, device=backend.name)
    assert loader.backend is backend
    backend.check_array(loader.X)
    assert loader.X.dtype == np.uint8 and loader.y.dtype == np.float32
    xb, yb = next(iter(loader))
    assert xb.dtype == np.uint8 and xb.shape == (4, 4, 4) and yb.shape == (4, 1)
    # device input is accepted as it is
    again = DataLoader(loader.X, loader.y, device=backend)
    backend.check_array(again.X)


@pytest.mark.parametrize("batch_size, error", [
    (0, ValueError), (-3, ValueError), (2.5, TypeError), (4.0, TypeError),
    (True, TypeError), ("8", TypeError),
])
def test_bad_batch_sizes(batch_size, error):
    X, y = _dataset()
    with pytest.raises(error, match="batch_size must be a positive integer"):
        DataLoader(X, y, batch_size=batch_size)


def test_numpy_integer_batch_size_is_accepted():
    X, y = _dataset()
    assert DataLoader(X, y, batch_size=np.int64(8)).batch_size == 8


def test_batch_larger_than_dataset_with_drop_last():
    X, y = _dataset()
    with pytest.raises(ValueError, match="larger than the dataset .50 samples"):
        DataLoader(X, y, batch_size=51, drop_last=True)


def test_bad_data():
    X, y = _dataset()
    with pytest.raises(ValueError, match="same number of samples, got 50 and 49"):
        DataLoader(X, y[:-1])
    with pytest.raises(ValueError, match="empty"):
        DataLoader(X[:0], y[:0])
    with pytest.raises(ValueError, match="0-d"):
        DataLoader(np.float32(1.0), y)
    with pytest.raises(TypeError, match="must hold numbers"):
        DataLoader(X, np.array(["a"] * 50))
    with pytest.raises(ValueError, match="device must be one of"):
        DataLoader(X, y, device="tpu")
