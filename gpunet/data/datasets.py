"""Datasets: Fashion-MNIST and MNIST from disk or a verified download, the lecture's toy
problems (:func:`xor`, :func:`spirals`, :func:`sine`), and :func:`to_float` for images.

``fashion_mnist()`` / ``mnist()`` return ``((X_train, y_train), (X_test, y_test))`` with uint8
images ``(n, 28, 28)`` and int64 labels. An explicit ``root`` is the only place searched
(``root`` and ``root/NAME``). Without it each of the four files (``.gz`` or uncompressed) is
looked for, in order, in: ``$GPUNET_DATA`` and ``$GPUNET_DATA/NAME``; the source checkout's
``data/NAME`` (Fashion-MNIST ships there; a wheel does not carry it); the user cache
``~/.cache/gpunet/NAME`` (``$XDG_CACHE_HOME`` is honoured); the system copy (Debian's
``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist``). A missing file is
downloaded into ``root/NAME``, else ``$GPUNET_DATA/NAME``, else the user cache: to a temporary
file, verified, then renamed into place. ``mirror=`` (a URL or a list of them) or
``$GPUNET_FASHION_MNIST_MIRROR`` / ``$GPUNET_MNIST_MIRROR`` replaces the public mirrors.
:func:`load_with_source` also says where the files were read from.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backend import backend_of
from .idx import IDXError, decompress, is_gzip, parse_idx
from .toy_data import sine, spirals, xor

__all__ = [
    "DATASETS", "DataFile", "DatasetError", "DatasetSpec", "FASHION_MNIST_CLASSES", "IDXError",
    "MNIST_CLASSES", "cache_dir", "checkout_dir", "class_names", "fashion_mnist", "load",
    "load_with_source", "mnist", "search_dirs", "sine", "spirals", "to_float", "xor",
]

DOWNLOAD_TIMEOUT_S = 60
#: The root of the source checkout this module lives in (when it is one: see checkout_dir).
CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


class DatasetError(RuntimeError):
    """A dataset file is missing, cannot be downloaded, or does not match its checksum."""


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its name without ``.gz`` and its published SHA-256.

    ``sha256`` is of the decompressed IDX content, or, with ``compressed=True``, of the
    published ``.gz`` file (then an uncompressed local copy is checked by structure only).
    """

    name: str
    sha256: str
    compressed: bool = False


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from and how to check it (see :data:`DATASETS`)."""

    name: str
    title: str
    classes: tuple[str, ...]
    files: dict  # train_images, train_labels, test_images, test_labels -> DataFile
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    system_package: str | None = None
    shipped: bool = False  # a source checkout holds the files in data/NAME

    @property
    def mirror_env(self) -> str:
        """The environment variable that overrides the mirrors, e.g. GPUNET_MNIST_MIRROR."""
        return "GPUNET_" + self.name.upper().replace("-", "_") + "_MIRROR"


def _files(train_images, train_labels, test_images, test_labels, compressed=False):
    digests = dict(train_images=train_images, train_labels=train_labels,
                   test_images=test_images, test_labels=test_labels)
    return {key: DataFile(f"{'train' if key.startswith('train') else 't10k'}-"
                          f"{'images-idx3' if key.endswith('images') else 'labels-idx1'}-ubyte",
                          digest, compressed)
            for key, digest in digests.items()}


#: The known datasets. Fashion-MNIST digests are of the decompressed files (they match the
#: upstream ``.gz`` and Debian's recompressed copy); MNIST digests are of the published
#: ``.gz`` files (as listed by TensorFlow Datasets).
DATASETS = {
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        title="Fashion-MNIST",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
        files=_files(
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/"
                 "data/fashion/"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        system_package="dataset-fashion-mnist",
        shipped=True,
    ),
    "mnist": DatasetSpec(
        name="mnist",
        title="MNIST",
        classes=tuple(str(d) for d in range(10)),
        files=_files(
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            compressed=True,
        ),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    ),
}


#: Fashion-MNIST's class names, indexed by label: ``FASHION_MNIST_CLASSES[y]``.
FASHION_MNIST_CLASSES = DATASETS["fashion-mnist"].classes
#: MNIST's class names (the digits as strings), indexed by label.
MNIST_CLASSES = DATASETS["mnist"].classes
#: The toy classification problems' classes (labels 0 and 1).
TOY_CLASSES = {"xor": ("0", "1"), "spirals": ("0", "1")}


def class_names(name: str) -> tuple[str, ...]:
    """The class names of dataset ``name`` (``"fashion-mnist"``, ``"mnist"``, ``"xor"``,
    ``"spirals"``), indexed by label: ``class_names("fashion-mnist")[predicted]``."""
    if name in TOY_CLASSES:
        return TOY_CLASSES[name]
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}, expected one of "
                         f"{sorted(DATASETS) + sorted(TOY_CLASSES)}")
    return DATASETS[name].classes


def cache_dir() -> Path:
    """The user cache for downloads: ``$XDG_CACHE_HOME/gpunet`` or ``~/.cache/gpunet``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gpunet"


def checkout_dir(name: str) -> Path | None:
    """``data/NAME`` of the source checkout gpunet runs from (an editable install is one),
    where dataset ``name`` ships; None for an installed wheel or a dataset that does not ship."""
    if not _spec(name).shipped or not (CHECKOUT_ROOT / "pyproject.toml").is_file():
        return None
    return CHECKOUT_ROOT / "data" / name


def _user_dirs(spec, root):
    """``root``, else ``$GPUNET_DATA``: as given and with the dataset's sub-folder."""
    base = root if root is not None else (os.environ.get("GPUNET_DATA") or None)
    if base is None:
        return []
    base = Path(base).expanduser()
    return [base, base / spec.name]


def search_dirs(name: str, root=None) -> list[Path]:
    """The folders searched for dataset ``name``'s files, in order (``root`` alone when
    given)."""
    spec = _spec(name)
    if root is not None:
        return _user_dirs(spec, root)
    shipped = checkout_dir(name)
    return _user_dirs(spec, None) + ([shipped] if shipped else []) + \
        [cache_dir() / spec.name] + [Path(d) for d in spec.system_dirs]


def _download_dir(spec, root) -> Path:
    user = _user_dirs(spec, root)
    return user[1] if user else cache_dir() / spec.name


def _spec(name) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}, expected one of {sorted(DATASETS)}")
    return DATASETS[name]


def _what_to_do(spec, root) -> str:
    if root is not None:  # only root is searched: the other places would not help
        fixes = [f"put the four files (.gz or uncompressed) in {root} or "
                 f"{Path(root) / spec.name}",
                 "drop root= (--data-dir) to search the usual places"]
    else:
        fixes = ["put the four files (.gz or uncompressed) in a folder and pass it as root= "
                 "(--data-dir) or $GPUNET_DATA"]
        if spec.shipped:
            fixes.append(f"run from a source checkout of gpunet, which ships them in "
                         f"data/{spec.name}")
        if spec.system_package:
            fixes.append(f"install the Debian package: apt-get install {spec.system_package}")
    fixes.append(f"download from another mirror with mirror=URL or ${spec.mirror_env}")
    return "; or ".join(fixes)


def _not_found(spec, datafile, dirs, root) -> str:
    searched = "\n".join(f"  {d}" for d in dirs)
    alone = " (root= or --data-dir: the only place searched)" if root is not None else ""
    return f"{spec.title} file {datafile.name}[.gz] not found in{alone}:\n{searched}\n"


def _read_verified(path: Path, datafile: DataFile, spec: DatasetSpec, *, url=None):
    """Read ``path`` as IDX after checking it against ``datafile``'s SHA-256; ``url`` names
    the source of a download (errors then name it instead of the temporary file)."""
    where, downloaded = url or os.fspath(path), url is not None
    data = path.read_bytes()
    content = decompress(data, where)
    checkable = is_gzip(data) or not datafile.compressed
    if downloaded and not checkable:
        raise DatasetError(f"{where}: expected gzip data, got {data[:4]!r}...")
    if checkable:  # else: an uncompressed copy of a dataset whose .gz digest is known
        digest = hashlib.sha256(data if datafile.compressed else content).hexdigest()
        if digest != datafile.sha256:
            kind = "file" if datafile.compressed else "decompressed content"
            raise DatasetError(
                f"{where}: SHA-256 of the {kind} is {digest}, expected {datafile.sha256} "
                f"for {spec.title} {datafile.name}: the file is corrupt or not this dataset"
                + ("" if downloaded else "; delete it to download a fresh copy")
            )
    return parse_idx(content, where)


def _find(datafile: DataFile, dirs) -> Path | None:
    for folder in dirs:
        for candidate in (folder / datafile.name, folder / (datafile.name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def _mirror_list(spec, mirror) -> list[str]:
    mirror = mirror or os.environ.get(spec.mirror_env)
    if not mirror:
        return list(spec.mirrors)
    if isinstance(mirror, str):
        return [mirror]
    if isinstance(mirror, (list, tuple)) and all(isinstance(m, str) for m in mirror):
        return list(mirror)
    raise TypeError(f"mirror must be a URL string or a list of them, got {mirror!r}")


def _download(spec, datafile, folder: Path, mirrors, why: str, fixes: str):
    """Fetch ``datafile`` from the first mirror that serves a verified copy; return its array.
    ``why`` (where it was looked for) and ``fixes`` open and close the error if none does."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (datafile.name + ".gz")
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + datafile.name + ".gz"
        print(f"gpunet: downloading {url} -> {target}", file=sys.stderr)
        fd, part = tempfile.mkstemp(dir=folder, prefix=f".{datafile.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, \
                    urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                shutil.copyfileobj(response, out)
                announced = response.headers.get("Content-Length")
                if announced is not None and out.tell() != int(announced):
                    raise DatasetError(f"{url}: download incomplete: received {out.tell()} of "
                                       f"{announced} bytes")
            array = _read_verified(Path(part), datafile, spec, url=url)
            os.chmod(part, 0o644)  # mkstemp made it private
            os.replace(part, target)
            return array
        except (OSError, ValueError, http.client.HTTPException, DatasetError) as exc:
            failures.append(f"  {exc}" if url in str(exc) else f"  {url}: {exc}")
        finally:
            if os.path.exists(part):
                os.unlink(part)
    raise DatasetError(
        f"{why}and could not be downloaded (no partial file was left in {folder}):\n"
        + "\n".join(failures) + f"\nTo fix: {fixes}."
    )


def load(name: str, root=None, download: bool = True, *, mirror=None):
    """Load dataset ``name`` (a key of :data:`DATASETS`) as ``((X_train, y_train), (X_test,
    y_test))``: uint8 images ``(n, 28, 28)``, int64 labels. See the module docstring for where
    files are looked for and downloaded to."""
    train, test, _ = load_with_source(name, root, download, mirror=mirror)
    return train, test


def load_with_source(name: str, root=None, download: bool = True, *, mirror=None):
    """:func:`load`'s splits and a line naming the folder the files were read from (or
    downloaded into): ``(train, test, "data: Fashion-MNIST from /path/to/folder")``."""
    spec = _spec(name)
    dirs = search_dirs(name, root)
    mirrors = _mirror_list(spec, mirror)
    arrays, sources = {}, {}  # key -> array; key -> its folder, with "(downloaded)"
    for key, datafile in spec.files.items():
        path = _find(datafile, dirs)
        if path is not None:
            arrays[key] = _read_verified(path, datafile, spec)
            sources[key] = str(path.parent)
            continue
        missing = _not_found(spec, datafile, dirs, root)
        if not download:
            raise DatasetError(
                f"{missing}To fix: allow the download (download=True in Python, drop "
                f"--no-download on the command line); or {_what_to_do(spec, root)}."
            )
        folder = _download_dir(spec, root)
        arrays[key] = _download(spec, datafile, folder, mirrors, missing,
                                _what_to_do(spec, root))
        sources[key] = f"{folder} (downloaded)"
    train = _check_split(spec, "train", arrays["train_images"], arrays["train_labels"])
    test = _check_split(spec, "test", arrays["test_images"], arrays["test_labels"])
    return train, test, _source_line(spec, sources)


def _source_line(spec, sources) -> str:
    """One line: the folder all files came from, else each folder with its files."""
    folders = dict.fromkeys(sources.values())
    if len(folders) == 1:
        return f"data: {spec.title} from {next(iter(folders))}"
    parts = []
    for folder in folders:
        names = ", ".join(spec.files[key].name for key, f in sources.items() if f == folder)
        parts.append(f"{folder} ({names})")
    return f"data: {spec.title} from " + "; ".join(parts)


def _check_split(spec, split, images, labels):
    """Check shapes, dtypes and label range of one split; labels become int64."""
    problem = None
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        problem = f"images should be uint8 (n, 28, 28), got {images.dtype} {images.shape}"
    elif labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        problem = (f"labels should be uint8 ({len(images)},) to match the images, got "
                   f"{labels.dtype} {labels.shape}")
    elif labels.size and labels.max() >= len(spec.classes):
        problem = f"labels should be below {len(spec.classes)}, found {labels.max()}"
    if problem:
        raise DatasetError(f"{spec.title} {split} split: {problem}")
    return images, labels.astype(np.int64)


def fashion_mnist(root=None, download: bool = True, *, mirror=None):
    """Fashion-MNIST (60000 train, 10000 test; 10 clothing classes): see :func:`load`."""
    return load("fashion-mnist", root, download, mirror=mirror)


def mnist(root=None, download: bool = True, *, mirror=None):
    """MNIST handwritten digits (60000 train, 10000 test): see :func:`load`."""
    return load("mnist", root, download, mirror=mirror)


def to_float(images, dtype=np.float32):
    """uint8 images scaled to ``dtype`` in [0, 1] (a new array on the images' device).

    Floating input is taken as already scaled and only cast; other dtypes are refused.
    """
    xp = backend_of(images).xp
    images = xp.asarray(images)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating-point type, got {dtype}")
    if images.dtype.kind == "f":
        return images.astype(dtype, copy=False)
    if images.dtype != np.uint8:
        raise TypeError(f"to_float expects uint8 images (0..255) or floats, got {images.dtype}")
    out = images.astype(dtype)
    return xp.divide(out, 255, out=out)
