"""Dataset discovery, verified downloads from a real local HTTP server, and to_float."""
import dataclasses
import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import gpunet as gn
from gpunet import datasets
from gpunet.data.datasets import DatasetError

from test_idx import idx_bytes

NAMES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
SHIPPED = Path(__file__).resolve().parents[1] / "data" / "fashion-mnist"


def _fake_arrays(seed=0, n_train=6, n_test=4):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


class FakeDataset:
    """Small valid IDX files standing in for a dataset, with their digests injected."""

    def __init__(self, arrays, compressed_digests=False):
        self.arrays = arrays
        self.raw = {key: idx_bytes(a, 0x08) for key, a in arrays.items()}
        self.gz = {key: gzip.compress(data, mtime=0) for key, data in self.raw.items()}
        hashed = self.gz if compressed_digests else self.raw
        self.files = {key: datasets.DataFile(NAMES[key], hashlib.sha256(hashed[key]).hexdigest(),
                                             compressed_digests)
                      for key in NAMES}

    def write(self, folder, compress=True, only=None):
        folder.mkdir(parents=True, exist_ok=True)
        for key in only or NAMES:
            suffix, data = (".gz", self.gz[key]) if compress else ("", self.raw[key])
            (folder / (NAMES[key] + suffix)).write_bytes(data)
        return folder

    def check(self, splits):
        (X, y), (Xt, yt) = splits
        for got, key in [(X, "train_images"), (y, "train_labels"), (Xt, "test_images"),
                         (yt, "test_labels")]:
            np.testing.assert_array_equal(got, self.arrays[key])
        assert X.dtype == np.uint8 and y.dtype == np.int64 and yt.dtype == np.int64


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private HOME with no data variables set, so nothing real is read or written."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CACHE_HOME", "GPUNET_DATA", "GPUNET_FASHION_MNIST_MIRROR",
                "GPUNET_MNIST_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def fake(home, monkeypatch):
    """Fashion-MNIST replaced by small files; no checkout or system copy, no public mirror."""
    fake = FakeDataset(_fake_arrays())
    spec = dataclasses.replace(datasets.DATASETS["fashion-mnist"], files=fake.files,
                               system_dirs=(), shipped=False,
                               mirrors=("http://127.0.0.1:9/unused/",))
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", spec)
    fake.cache = home / ".cache" / "gpunet" / "fashion-mnist"
    return fake


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        body, cut = route
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:cut] if cut is not None else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1 (random port) in a thread; ``serve`` adds files."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"

    def serve(prefix, files, cut=None):
        """Serve ``files`` (key -> bytes) under ``prefix``; ``cut`` closes the connection
        after that many bytes while announcing the full length."""
        for key, body in files.items():
            httpd.routes[f"{prefix}/{NAMES[key]}.gz"] = (body, cut)
        return httpd.url + prefix + "/"

    httpd.serve = serve
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _listing(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_goes_to_the_user_cache_and_is_reused(fake, server):
    mirror = server.serve("/fm", fake.gz)
    fake.check(datasets.fashion_mnist(mirror=mirror))
    assert _listing(fake.cache) == sorted(n + ".gz" for n in NAMES.values())
    assert len(server.requests) == 4
    fake.check(datasets.fashion_mnist(download=False))
    assert len(server.requests) == 4


def test_download_goes_to_root_or_gpunet_data(fake, server, tmp_path, monkeypatch):
    mirror = server.serve("/fm", fake.gz)
    fake.check(datasets.fashion_mnist(root=tmp_path / "data", mirror=mirror))
    assert len(_listing(tmp_path / "data" / "fashion-mnist")) == 4

    monkeypatch.setenv("GPUNET_DATA", str(tmp_path / "shared"))
    monkeypatch.setenv("GPUNET_FASHION_MNIST_MIRROR", mirror)
    fake.check(gn.datasets.load("fashion-mnist"))
    assert len(_listing(tmp_path / "shared" / "fashion-mnist")) == 4
    assert not fake.cache.exists()


def test_next_mirror_is_tried_after_a_failure(fake, server):
    good = server.serve("/good", fake.gz)
    fake.check(datasets.fashion_mnist(mirror=[server.url + "/missing/", good]))
    assert server.requests.count("/missing/train-images-idx3-ubyte.gz") == 1


def _assert_failed_cleanly(fake, info, saved):
    """The error says what to do, and only fully verified files were kept."""
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and "no partial file was left" in message
    for hint in ("mirror=URL", "GPUNET_FASHION_MNIST_MIRROR", "--data-dir",
                 "apt-get install dataset-fashion-mnist"):
        assert hint in message
    assert _listing(fake.cache) == saved


@pytest.mark.parametrize("damage, expected", [
    ("wrong hash", "SHA-256 of the decompressed content is"),
    ("truncated file", "corrupt or truncated gzip"),
    ("connection cut", "download incomplete: received 1[0-9] of [23][0-9] bytes"),
    ("404", "HTTP Error 404"),
])
def test_bad_downloads_leave_no_partial_file(fake, server, damage, expected):
    files = dict(fake.gz)
    cut = None
    if damage == "wrong hash":
        other = FakeDataset(_fake_arrays(seed=1))
        files["test_labels"] = other.gz["test_labels"]
    elif damage == "truncated file":
        files["test_labels"] = files["test_labels"][:-10]
    elif damage == "404":
        del files["test_labels"]
    mirror = server.serve("/fm", {k: v for k, v in files.items() if k != "test_labels"})
    if "test_labels" in files:
        server.serve("/fm", {"test_labels": files["test_labels"]},
                     cut=len(files["test_labels"]) // 2 if damage == "connection cut" else None)
    with pytest.raises(DatasetError, match=expected) as info:
        datasets.fashion_mnist(mirror=mirror)
    saved = sorted(NAMES[k] + ".gz" for k in ("train_images", "train_labels", "test_images"))
    _assert_failed_cleanly(fake, info, saved)


def test_missing_files_without_download(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNET_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetError, match="t10k-images|train-images") as info:
        datasets.fashion_mnist(download=False)
    message = str(info.value)
    assert str(tmp_path / "env" / "fashion-mnist") in message and str(fake.cache) in message
    assert "download=True" in message and "apt-get install dataset-fashion-mnist" in message


def test_an_explicit_root_is_the_only_place_searched(fake, server, tmp_path, monkeypatch):
    fake.write(fake.cache)  # valid copies elsewhere must not be read instead
    monkeypatch.setenv("GPUNET_DATA", str(fake.write(tmp_path / "env")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as info:
        datasets.fashion_mnist(root=empty, download=False)
    message = str(info.value)
    assert f"not found in (root= or --data-dir: the only place searched):\n  {empty}\n" \
           f"  {empty / 'fashion-mnist'}\n" in message
    assert str(fake.cache) not in message and str(tmp_path / "env") not in message
    assert "apt-get" not in message and "drop root= (--data-dir)" in message

    with pytest.raises(DatasetError, match="the only place searched") as info:
        datasets.fashion_mnist(root=empty)  # no mirror answers: the download fails
    assert "and could not be downloaded" in str(info.value) and str(empty) in str(info.value)

    fake.check(datasets.fashion_mnist(root=empty, mirror=server.serve("/fm", fake.gz)))
    assert len(_listing(empty / "fashion-mnist")) == 4 and len(server.requests) == 4


def test_the_source_line_names_the_folder_read(fake, server, tmp_path, monkeypatch):
    fake.write(tmp_path / "d")
    *splits, source = datasets.load_with_source("fashion-mnist", root=tmp_path / "d",
                                                download=False)
    fake.check(splits)
    assert source == f"data: Fashion-MNIST from {tmp_path / 'd'}"

    monkeypatch.setenv("GPUNET_DATA", str(tmp_path / "env"))
    fake.write(tmp_path / "env" / "fashion-mnist", only=["train_images", "train_labels"])
    fake.write(fake.cache, only=["test_images"])
    *splits, source = datasets.load_with_source("fashion-mnist",
                                                mirror=server.serve("/fm", fake.gz))
    fake.check(splits)
    assert source == (
        f"data: Fashion-MNIST from {tmp_path / 'env' / 'fashion-mnist'} "
        f"(train-images-idx3-ubyte, train-labels-idx1-ubyte); {fake.cache} "
        f"(t10k-images-idx3-ubyte); {tmp_path / 'env' / 'fashion-mnist'} (downloaded) "
        f"(t10k-labels-idx1-ubyte)")


def test_local_uncompressed_files_and_root_sub_folder(fake, tmp_path):
    fake.write(tmp_path / "raw", compress=False)
    fake.check(datasets.fashion_mnist(root=tmp_path / "raw", download=False))
    fake.write(tmp_path / "base" / "fashion-mnist")
    fake.check(datasets.fashion_mnist(root=tmp_path / "base", download=False))


def test_look_up_order_root_then_gpunet_data_then_cache(fake, tmp_path, monkeypatch):
    broken = FakeDataset(_fake_arrays(seed=1))  # valid IDX, wrong checksums
    monkeypatch.setenv("GPUNET_DATA", str(tmp_path / "env"))
    fake.write(tmp_path / "root")
    broken.write(tmp_path / "env")
    broken.write(fake.cache)
    fake.check(datasets.fashion_mnist(root=tmp_path / "root", download=False))

    with pytest.raises(DatasetError, match="delete it to download a fresh copy") as info:
        datasets.fashion_mnist(download=False)  # $GPUNET_DATA comes before the cache
    assert str(tmp_path / "env") in str(info.value)

    fake.write(tmp_path / "env")
    fake.check(datasets.fashion_mnist(download=False))


def test_files_may_come_from_different_places(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNET_DATA", str(tmp_path / "env"))
    fake.write(tmp_path / "env", only=["train_images", "train_labels"])
    fake.write(fake.cache, only=["test_images", "test_labels"], compress=False)
    fake.check(datasets.fashion_mnist(download=False))


def test_system_copy_is_found(fake, tmp_path, monkeypatch):
    spec = dataclasses.replace(datasets.DATASETS["fashion-mnist"],
                               system_dirs=(str(fake.write(tmp_path / "usr-share")),))
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", spec)
    fake.check(datasets.fashion_mnist(download=False))


def test_compressed_digests_check_gz_downloads_and_accept_raw_copies(home, server, tmp_path,
                                                                     monkeypatch):
    fake = FakeDataset(_fake_arrays(seed=2), compressed_digests=True)
    spec = dataclasses.replace(datasets.DATASETS["mnist"], files=fake.files)
    monkeypatch.setitem(datasets.DATASETS, "mnist", spec)
    fake.check(datasets.mnist(mirror=server.serve("/mnist", fake.gz)))
    assert len(_listing(home / ".cache" / "gpunet" / "mnist")) == 4

    fake.write(tmp_path / "raw", compress=False)  # no .gz digest applies: structure only
    fake.check(datasets.mnist(root=tmp_path / "raw", download=False))

    shutil.rmtree(home / ".cache")
    recompressed = {k: gzip.compress(v, compresslevel=1, mtime=1) for k, v in fake.raw.items()}
    bad = server.serve("/recompressed", recompressed)
    with pytest.raises(DatasetError, match="/recompressed/train-images-idx3-ubyte.gz: SHA-256 "
                                           "of the file is"):
        datasets.mnist(root=tmp_path / "empty", mirror=bad)
    assert _listing(tmp_path / "empty" / "mnist") == []


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(train_images=a["train_images"][:, :27]),
     r"images should be uint8 \(n, 28, 28\), got uint8 \(6, 27, 28\)"),
    (lambda a: a.update(test_labels=a["test_labels"][:-1]), r"labels should be uint8 \(4,\)"),
    (lambda a: a["train_labels"].__setitem__(0, 10), "labels should be below 10, found 10"),
])
def test_files_with_the_wrong_structure(home, tmp_path, monkeypatch, change, message):
    arrays = _fake_arrays()
    change(arrays)
    fake = FakeDataset(arrays)
    spec = dataclasses.replace(datasets.DATASETS["fashion-mnist"], files=fake.files,
                               system_dirs=())
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", spec)
    with pytest.raises(DatasetError, match=message):
        datasets.fashion_mnist(root=fake.write(tmp_path / "d"), download=False)


def test_bad_arguments(fake):
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        datasets.load("cifar")
    with pytest.raises(TypeError, match="mirror must be a URL string"):
        datasets.fashion_mnist(mirror=42)


def _check_real_fashion_mnist(splits):
    (X, y), (Xt, yt) = splits
    assert X.shape == (60000, 28, 28) and Xt.shape == (10000, 28, 28)
    assert X.dtype == Xt.dtype == np.uint8 and y.dtype == yt.dtype == np.int64
    assert np.bincount(y).tolist() == [6000] * 10
    assert np.bincount(yt).tolist() == [1000] * 10
    assert X.max() == 255 and X.min() == 0


def test_the_checkout_ships_fashion_mnist_and_reads_it_first(home, tmp_path, monkeypatch):
    assert sorted(p.name for p in SHIPPED.iterdir()) == [
        "LICENSE", "README.md", *sorted(n + ".gz" for n in NAMES.values())]
    assert "Zalando SE" in (SHIPPED / "LICENSE").read_text()
    assert datasets.checkout_dir("fashion-mnist") == SHIPPED
    assert datasets.checkout_dir("mnist") is None  # not shipped
    monkeypatch.setenv("GPUNET_DATA", str(tmp_path / "env"))
    dirs = datasets.search_dirs("fashion-mnist")
    assert dirs[:4] == [tmp_path / "env", tmp_path / "env" / "fashion-mnist", SHIPPED,
                        home / ".cache" / "gpunet" / "fashion-mnist"]
    *splits, source = datasets.load_with_source("fashion-mnist", download=False)
    assert source == f"data: Fashion-MNIST from {SHIPPED}"  # the SHA-256s matched
    _check_real_fashion_mnist(splits)


def test_outside_a_checkout_nothing_is_shipped(home, monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "CHECKOUT_ROOT", tmp_path)  # no pyproject.toml: a wheel
    assert datasets.checkout_dir("fashion-mnist") is None
    assert datasets.search_dirs("fashion-mnist") == [home / ".cache" / "gpunet" / "fashion-mnist",
                                                     DEBIAN]


@pytest.mark.skipif(not all((DEBIAN / f"{n}.gz").is_file() for n in NAMES.values()),
                    reason=f"Fashion-MNIST not installed at {DEBIAN} "
                           "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_from_the_debian_package(home, monkeypatch):
    spec = dataclasses.replace(datasets.DATASETS["fashion-mnist"], shipped=False)
    monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", spec)
    *splits, source = datasets.load_with_source("fashion-mnist", download=False)
    assert source == f"data: Fashion-MNIST from {DEBIAN}"
    _check_real_fashion_mnist(splits)


def test_to_float_scales_uint8_images(backend):
    images = backend.xp.asarray(np.array([[0, 51, 255]], dtype=np.uint8))
    out = datasets.to_float(images)
    backend.check_array(out)
    assert out.dtype == np.float32
    np.testing.assert_allclose(gn.to_numpy(out), [[0.0, 0.2, 1.0]], rtol=1e-7, atol=0)
    assert float(out[0, 2]) == 1.0
    assert datasets.to_float(images, dtype="float64").dtype == np.float64
    floats = backend.xp.asarray(np.array([0.5], dtype=np.float64))
    assert datasets.to_float(floats).dtype == np.float32


def test_to_float_refuses_other_dtypes():
    with pytest.raises(TypeError, match="expects uint8 images .0..255. or floats, got int32"):
        datasets.to_float(np.zeros(3, dtype=np.int32))
    with pytest.raises(TypeError, match="dtype must be a floating-point type, got int64"):
        datasets.to_float(np.zeros(3, dtype=np.uint8), dtype=np.int64)
