"""Reading a checkpoint's ``.npz`` file without trusting it.

Nothing a file declares is believed before it is checked: every entry's ``.npy`` header
(shape, dtype) and its size and place in the archive are checked before a byte of its data
is read, entries are stored (not compressed, so an entry's data is as large as the bytes the
file really holds), JSON entries are bounded in length and nesting, and the architecture may
declare at most :class:`LoadLimits` layers and parameters. Loading therefore costs memory in
proportion to the file's content, never to what it claims.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import zipfile
import zlib

import numpy as np

from ...checks import check_int

_NPY_HEADER_MAX = 10_000  # bytes of one .npy header (NumPy's own default cap)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not match: corrupt, truncated, of
    another format version, hostile, over a :class:`LoadLimits` limit, or with shapes that
    do not fit the architecture."""


@dataclasses.dataclass(frozen=True)
class LoadLimits:
    """The most a checkpoint may declare; pass your own to ``gpunet.load(..., limits=)``.

    - ``max_parameters``: weights of the architecture, all layers together (1e9 = 4 GB of
      float32; ``gpunet train/eval --max-params`` sets it),
    - ``max_layers``: layers, containers included,
    - ``max_json_chars``: characters of one JSON entry (architecture, optimizer, meta),
    - ``max_depth``: nesting of lists and objects in a JSON entry.
    """

    max_parameters: int = 1_000_000_000
    max_layers: int = 10_000
    max_json_chars: int = 2**26
    max_depth: int = 64

    def __post_init__(self):
        for field in dataclasses.fields(self):
            check_int(getattr(self, field.name), f"LoadLimits.{field.name}", 1)


DEFAULT_LIMITS = LoadLimits()


def json_depth(value, limit):
    """The nesting depth of lists and dicts in ``value``, counted up to ``limit + 1``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > limit:
                break
            stack.extend((child, depth + 1)
                         for child in (item.values() if isinstance(item, dict) else item))
    return deepest


class NpzReader:
    """The entries of one ``.npz`` file (keys without ``.npy``), each checked before use:
    :meth:`header` reads only an entry's ``.npy`` header, :meth:`read` its data."""

    def __init__(self, path):
        self.path = path
        if os.path.isfile(path) and not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is not an .npz file (no zip archive found: "
                                  f"another kind of file, or a truncated checkpoint)")
        try:
            self._zip = zipfile.ZipFile(path)
            self._size = os.path.getsize(path)
        except FileNotFoundError:
            raise CheckpointError(f"no checkpoint at {path}: the file does not exist") from None
        except IsADirectoryError:
            raise CheckpointError(f"{path} is a directory, not a checkpoint file") from None
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise CheckpointError(f"{path} is not a readable .npz file: {exc}") from exc
        self.entries = {}
        for info in self._zip.infolist():
            if not info.filename.endswith(".npy"):
                self.close()
                raise CheckpointError(f"{path} holds {info.filename!r}, which is not an .npy "
                                      f"entry: not a gpunet checkpoint")
            self.entries[info.filename[:-4]] = info
        self._headers = {}

    def close(self):
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _corrupt(self, key, exc):
        return CheckpointError(f"{self.path} is not a readable gpunet checkpoint (corrupt or "
                               f"truncated .npz file; entry {key!r}): {exc}")

    def header(self, key):
        """``(shape, dtype)`` of entry ``key`` from its ``.npy`` header, after checking that
        the entry is stored uncompressed, lies inside the file and holds exactly the bytes
        the header implies."""
        if key in self._headers:
            return self._headers[key]
        info = self.entries[key]
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(f"{self.path}: entry {key!r} is compressed; gpunet writes "
                                  f"and reads uncompressed .npz files only")
        if info.header_offset + info.compress_size > self._size:
            raise CheckpointError(f"{self.path}: entry {key!r} claims {info.file_size} bytes "
                                  f"past the end of the {self._size}-byte file (truncated?)")
        try:
            with self._zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = {(1, 0): np.lib.format.read_array_header_1_0,
                        (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read is None:
                    raise ValueError(f".npy format version {version} is not supported")
                shape, _, dtype = read(f, max_header_size=_NPY_HEADER_MAX)
                data_start = f.tell()
        except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error) as exc:
            raise self._corrupt(key, exc) from exc
        if dtype.hasobject:
            raise CheckpointError(f"{self.path}: entry {key!r} holds Python objects "
                                  f"(dtype {dtype}); checkpoints hold numbers and text only")
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size != data_start + nbytes:
            raise CheckpointError(f"{self.path}: entry {key!r} declares shape {shape} of "
                                  f"{dtype} ({nbytes} bytes) but holds "
                                  f"{info.file_size - data_start} bytes of data")
        self._headers[key] = shape, dtype
        return shape, dtype

    def read(self, key):
        """The array of entry ``key`` (its header is checked first)."""
        self.header(key)
        try:
            with self._zip.open(self.entries[key]) as f:
                return np.lib.format.read_array(f, allow_pickle=False,
                                                max_header_size=_NPY_HEADER_MAX)
        except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error) as exc:
            raise self._corrupt(key, exc) from exc

    def _scalar(self, key, kinds, what, max_itemsize):
        if key not in self.entries:
            raise CheckpointError(f"{self.path} lacks the entry {key!r}")
        shape, dtype = self.header(key)
        if shape != () or dtype.kind not in kinds or dtype.itemsize > max_itemsize:
            raise CheckpointError(f"{self.path}: entry {key!r} must be {what}, got shape "
                                  f"{shape} of {dtype}")
        return self.read(key)[()]

    def text(self, key, max_chars=64):
        """Entry ``key``: one string of at most ``max_chars`` characters."""
        value = self._scalar(key, "U", f"one string of at most {max_chars:,} characters",
                             4 * max_chars)
        return str(value)

    def integer(self, key):
        """Entry ``key``: one integer."""
        return int(self._scalar(key, "iu", "one integer", 8))

    def json_object(self, key, limits):
        """Entry ``key``: a JSON object (dict) within ``limits`` of length and nesting."""
        text = self.text(key, limits.max_json_chars)
        try:
            value = json.loads(text)
        except RecursionError:
            value = None
            depth = math.inf
        except ValueError as exc:  # also json.JSONDecodeError
            raise CheckpointError(f"{self.path}: entry {key!r} is not valid JSON: "
                                  f"{exc}") from exc
        else:
            depth = json_depth(value, limits.max_depth)
        if depth > limits.max_depth:
            raise CheckpointError(f"{self.path}: entry {key!r} nests lists and objects "
                                  f"deeper than the limit of {limits.max_depth} levels "
                                  f"(LoadLimits.max_depth)")
        if not isinstance(value, dict):
            raise CheckpointError(f"{self.path}: entry {key!r} must hold a JSON object "
                                  f"(dict), got {type(value).__name__} {value!r:.60}")
        return value
