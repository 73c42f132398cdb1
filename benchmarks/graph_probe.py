"""Which GEMM can be captured in a CUDA graph here, and what it costs replayed.

The captured training step (``fit(graph="on")``) needs its GEMMs inside the graph. Three
candidates, each tried on one forward product ``out = x @ w.T`` of the lecture's first layer:

- ``cupy.matmul``: CuPy's own call (it may refuse while a stream captures);
- ``cublas-direct``: ``cublasSgemm`` through ``cupy_backends.cuda.libs.cublas`` on CuPy's
  handle (cuBLAS itself supports capture; CuPy's wrapper sets the handle's stream first, which
  may refuse while capturing: the probe finds out);
- ``tiled``: gpunet's ``kernels/gemm.cu`` (what the captured step uses today).

For each: whether capture succeeds, whether the replay gives the eager result, and the median
microseconds per call eager and replayed (CUDA events) at a few batch sizes.

:func:`time_configurations` times the tiled GEMM's tile configurations (each unsplit and split
as its rule would split it) and the launcher's own plan against ``cupy.matmul`` at every product
of a training step (forward, weight grad, input grad) of a 784-512-512-10 network, so the
launcher's selection rule can be checked against measurements. ``benchmarks/gpu_check.sh``
runs it as its ``graph`` stage: ``python benchmarks/graph_probe.py --out graph.json``.
"""
from __future__ import annotations

import argparse
import json

import cupy
import numpy as np

from benchmarks.device_timing import time_ms
from gpunet.ops.launchers import gemm
from gpunet.ops.workspace import Workspace

BATCHES = (32, 256, 4096)
N_IN, N_OUT = 784, 512
WORKSPACE = Workspace(cupy)  # the tiled GEMM's split-K partial sums
LAYERS = ((784, 512), (512, 512), (512, 10))
TRAIN_BATCHES = (32, 128, 1024, 65536)


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
    "tiled": lambda x, w, out: gemm.gemm(x, w, out, False, True, WORKSPACE),
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


def training_products(batch, n_in, n_out):
    """``(product, m, n, k, trans_a, trans_b)`` of one linear layer's step."""
    return (("forward x W^T", batch, n_out, n_in, False, True),
            ("weight grad dZ^T X", n_out, n_in, batch, True, False),
            ("input grad dZ W", batch, n_in, n_out, False, False))


def time_product(m, n, k, trans_a, trans_b):
    """Median microseconds of cupy.matmul, of the launcher's plan, and of each configuration
    unsplit and split as :func:`gemm.filling_plan` splits it, for one product."""
    sms = gemm.sm_count()
    a = cupy.random.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
    b = cupy.random.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
    op_a, op_b = a.T if trans_a else a, b.T if trans_b else b
    out = cupy.empty((m, n), dtype=np.float32)
    chosen = gemm.plan(m, n, k, sms)
    plans = {"plan": chosen}
    for tiles in gemm.CONFIGS:
        for p in (gemm.make_plan(tiles, m, n, k, 1), gemm.filling_plan(tiles, m, n, k, sms)):
            plans[f"{tiles.bm}x{tiles.bn}/{p.splits}"] = p
    row = {"m": m, "n": n, "k": k, "plan": f"{chosen.tiles.bm}x{chosen.tiles.bn}/{chosen.splits}",
           "matmul_us": 1e3 * time_ms(lambda: cupy.matmul(op_a, op_b, out=out), samples=5,
                                      calls=20)}
    for label, p in plans.items():
        row[f"{label}_us"] = 1e3 * time_ms(
            lambda: gemm.run_plan(p, a, b, out, trans_a, trans_b, WORKSPACE),  # noqa: B023
            samples=5, calls=20)
    return row


def time_configurations() -> list[dict]:
    """:func:`time_product` at every training product of every layer and batch size."""
    rows = []
    for batch in TRAIN_BATCHES:
        for n_in, n_out in LAYERS:
            for product, *shape in training_products(batch, n_in, n_out):
                row = {"product": product, **time_product(*shape)}
                rows.append(row)
                print(f"gemm configs {product:19s} {row['m']:6d} x {row['n']:4d} x "
                      f"{row['k']:6d}: " + ", ".join(
                          f"{k[:-3]}={v:.1f}" for k, v in row.items() if k.endswith("_us"))
                      + f" (plan {row['plan']})", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--rehearsal", action="store_true",
                        help="batches of at most 256 rows, for a run on the CuPy stand-in "
                             "(benchmarks/gpu_check_standin.py): its timings mean nothing")
    args = parser.parse_args()
    if args.rehearsal:  # the stand-in emulates every CUDA thread on the CPU
        global BATCHES, TRAIN_BATCHES
        BATCHES, TRAIN_BATCHES = (32, 256), (32,)
    result = {"routes": probe(), "configurations": time_configurations()}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
