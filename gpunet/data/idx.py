"""Reader for the IDX format of the MNIST family (plain or gzip-compressed).

An IDX file is a 4-byte magic number (two zero bytes, a data-type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order, big-endian.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

#: IDX data-type codes and the (big-endian) dtypes they stand for.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """A file is not valid IDX (bad magic, type code, dimensions or length) or not valid gzip."""


def is_gzip(data: bytes) -> bool:
    """Whether ``data`` starts with the gzip magic bytes."""
    return data.startswith(_GZIP_MAGIC)


def decompress(data: bytes, name: str = "<bytes>") -> bytes:
    """``data`` decompressed if it is gzip (detected by content, not by file name), else as is."""
    if not is_gzip(data):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXError(f"{name}: corrupt or truncated gzip data ({exc})") from exc


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX ``data`` into a writable array in native byte order; ``name`` labels errors."""
    if len(data) < 4:
        raise IDXError(f"{name}: {len(data)} bytes is too short for the 4-byte IDX magic number")
    if data[:2] != b"\x00\x00":
        raise IDXError(
            f"{name}: not an IDX file: magic number 0x{data[:4].hex()} should start with "
            f"two zero bytes"
        )
    code, ndim = data[2], data[3]
    dtype = IDX_DTYPES.get(code)
    if dtype is None:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise IDXError(f"{name}: unknown IDX data type code 0x{code:02x}, expected one of {known}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(
            f"{name}: truncated header: {ndim} dimensions need {header} bytes, file has "
            f"{len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = math.prod(shape)
    expected, got = count * dtype.itemsize, len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise IDXError(
            f"{name}: {what}: shape {shape} of {dtype.newbyteorder('=')} needs {expected} "
            f"data bytes, file has {got}"
        )
    values = np.frombuffer(data, dtype=dtype, count=count, offset=header)
    return values.reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a NumPy array; bad files raise :class:`IDXError`."""
    with open(path, "rb") as f:
        data = f.read()
    return parse_idx(decompress(data, os.fspath(path)), os.fspath(path))
