"""``with_shifts``: the training images and four copies moved one pixel, zero-filled."""
import numpy as np
import pytest

from gpunet.data.augment import with_shifts


def test_each_copy_is_the_image_moved_one_pixel_with_zeros_moved_in():
    images = np.arange(1, 2 * 3 * 4 + 1, dtype=np.uint8).reshape(2, 3, 4)
    X, y = with_shifts(images, np.array([7, 8]))
    assert X.shape == (10, 3, 4) and X.dtype == np.uint8
    np.testing.assert_array_equal(y, [7, 8] * 5)
    np.testing.assert_array_equal(X[:2], images)
    up, down, left, right = X[2:4], X[4:6], X[6:8], X[8:10]
    np.testing.assert_array_equal(up[:, :-1], images[:, 1:])
    np.testing.assert_array_equal(down[:, 1:], images[:, :-1])
    np.testing.assert_array_equal(left[:, :, :-1], images[:, :, 1:])
    np.testing.assert_array_equal(right[:, :, 1:], images[:, :, :-1])
    for edge in (up[:, -1], down[:, 0], left[:, :, -1], right[:, :, 0]):
        assert not edge.any()


def test_wrong_shapes_are_named():
    with pytest.raises(ValueError, match=r"images must be \(n, height, width\), got shape "
                                         r"\(4, 784\)"):
        with_shifts(np.zeros((4, 784)), np.zeros(4))
    with pytest.raises(ValueError, match="same number of samples, got 4 and 3"):
        with_shifts(np.zeros((4, 2, 2)), np.zeros(3))
