"""Which GEMM can be captured in a CUDA graph here, and what it costs replayed.

The captured training step (``fit(graph="on")``) needs its GEMMs inside the graph. Three
candidates, each tried on one forward product ``out = x @ w.T`` of the lecture's first layer:

- ``cupy.matmul``: CuPy's own call (it may refuse while a stream captures);
- ``cublas-direct``: ``cublasSgemm`` through ``cupy_backends.cuda.libs.cublas`` on CuPy's
  handle (cuBLAS itself supports capture; CuPy's wrapper sets the handle's stream first, which
  may refuse while capturing: the probe finds out);
- ``tiled``: gpunet's ``kernels/gemm.cu`` (what the captured step uses today).

For each: whether capture succeeds, whether the replay gives the eager result, and the median
microseconds per call eager and replayed (CUDA events) at a few batch sizes. Called by
``gpu_check.py``; alone: ``python benchmarks/graph_probe.py``.
"""
from __future__ import annotations

import json

import cupy
import numpy as np

from benchmarks.device_timing import time_ms
from gpunet.ops.launchers import gemm

BATCHES = (32, 256, 4096)
N_IN, N_OUT = 784, 512


def _cublas_direct(x, w, out):
    """``out = x @ w.T`` by ``cublasSgemm`` (row-major through the column-major API:
    ``out^T = w @ x^T``, i.e. ``C = op_T(W) @ X`` with W stored (N_OUT, N_IN))."""
    from cupy_backends.cuda.libs import cublas

    handle = cupy.cuda.device.get_cublas_handle()
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    m, n, k = out.shape[1], out.shape[0], x.shape[1]
    cublas.sgemm(handle, cublas.CUBLAS_OP_T, cublas.CUBLAS_OP_N, m, n, k,
                 one.ctypes.data, w.data.ptr, k, x.data.ptr, k,
                 zero.ctypes.data, out.data.ptr, m)


ROUTES = {
    "cupy.matmul": lambda x, w, out: cupy.matmul(x, w.T, out=out),
    "cublas-direct": _cublas_direct,
    "tiled": lambda x, w, out: gemm.gemm(x, w, out, False, True),
}


def probe_route(name, batch):
    """One route at one batch size: capture, check the replay, time eager and replayed."""
    call = ROUTES[name]
    x = cupy.random.standard_normal((batch, N_IN), dtype=np.float32)
    w = cupy.random.standard_normal((N_OUT, N_IN), dtype=np.float32)
    want = x @ w.T
    out = cupy.full((batch, N_OUT), np.nan, dtype=np.float32)
    cupy.cuda.Device().synchronize()  # made on the default stream, used on another
    stream = cupy.cuda.Stream(non_blocking=True)
    row = {"route": name, "batch": batch}
    with stream:
        try:
            call(x, w, out)
            stream.synchronize()
            row["eager_ok"] = bool(cupy.allclose(out, want, rtol=1e-4, atol=1e-3))
            row["eager_us"] = 1e3 * time_ms(lambda: call(x, w, out), samples=7, calls=20)
        except Exception as exc:  # noqa: BLE001 - a route that fails is a finding
            row["eager_error"] = f"{type(exc).__name__}: {exc}"
            return row
        out.fill(np.nan)
        try:
            stream.begin_capture()
            try:
                call(x, w, out)
            finally:
                graph = stream.end_capture()
            graph.launch(stream)
            stream.synchronize()
        except Exception as exc:  # noqa: BLE001
            row["capture_error"] = f"{type(exc).__name__}: {exc}"
            return row
        row["replay_ok"] = bool(cupy.allclose(out, want, rtol=1e-4, atol=1e-3))
        row["replay_us"] = 1e3 * time_ms(lambda: graph.launch(stream), samples=7, calls=20)
    return row


def probe() -> list[dict]:
    """Every route at every batch size (a route's failure is recorded, not raised)."""
    rows = []
    for name in ROUTES:
        for batch in BATCHES:
            row = probe_route(name, batch)
            rows.append(row)
            print(f"graph probe {name:14s} batch {batch:5d}: " + ", ".join(
                f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in row.items() if k not in ("route", "batch")), flush=True)
    return rows


if __name__ == "__main__":
    print(json.dumps(probe(), indent=1))
