"""IDX reader: every data-type code, gzip or raw, and clear errors for broken files."""
import gzip
import struct

import numpy as np
import pytest

from gpunet.data.idx import IDXError, parse_idx, read_idx


def idx_bytes(array, code):
    """Encode ``array`` as IDX by hand (the format spec, independent of the reader)."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


CASES = [
    (0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
    (0x0D, np.float32), (0x0E, np.float64),
]


@pytest.mark.parametrize("code, dtype", CASES)
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_every_type_code(tmp_path, rng, code, dtype, compress):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        array = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(dtype)
    else:
        array = rng.standard_normal((3, 4, 5)).astype(dtype)
    data = idx_bytes(array, code)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    path.write_bytes(gzip.compress(data) if compress else data)

    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, array)
    out[0, 0, 0] = 0  # a writable array, not a view of the file bytes


def test_gzip_detected_by_content_not_name(tmp_path):
    labels = np.arange(7, dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte"  # no .gz, but compressed
    path.write_bytes(gzip.compress(idx_bytes(labels, 0x08)))
    np.testing.assert_array_equal(read_idx(path), labels)


def test_one_dimensional_labels():
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(labels, 0x08)), labels)


GOOD = idx_bytes(np.ones((2, 3), dtype=np.uint8), 0x08)  # header 12 bytes + 6 data bytes


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00", "too short for the 4-byte IDX magic"),
    (b"\x01\x00\x08\x01" + GOOD[4:], "not an IDX file: magic number 0x01000801"),
    (b"PK\x03\x04" + GOOD[4:], "not an IDX file"),
    (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown IDX data type code 0x0a"),
    (GOOD[:8], "truncated header: 2 dimensions need 12 bytes, file has 8"),
    (GOOD[:-1], "truncated: shape .2, 3. of uint8 needs 6 data bytes, file has 5"),
    (GOOD + b"\x00\x00", "has trailing bytes: .* needs 6 data bytes, file has 8"),
])
def test_broken_files_name_the_file(tmp_path, data, message):
    path = tmp_path / "broken-idx2-ubyte"
    path.write_bytes(data)
    with pytest.raises(IDXError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_multi_byte_length_mismatch_counts_bytes():
    data = idx_bytes(np.arange(4, dtype=np.int32), 0x0C)
    with pytest.raises(IDXError, match="shape .4,. of int32 needs 16 data bytes, file has 14"):
        parse_idx(data[:-2], "x")


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_gzip_names_the_file(tmp_path, damage):
    compressed = bytearray(gzip.compress(GOOD))
    if damage == "truncate":
        compressed = compressed[: len(compressed) // 2]
    else:
        compressed[-6] ^= 0xFF  # inside the CRC-32 trailer
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(bytes(compressed))
    with pytest.raises(IDXError, match="corrupt or truncated gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_error_is_a_value_error():
    assert issubclass(IDXError, ValueError)
