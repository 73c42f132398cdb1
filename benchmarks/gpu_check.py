"""Per-kernel timings: each fused kernel against its unfused CuPy version, plus the GEMM routes.

Times with CUDA events (warm-up, then the median of several samples, each a batch of calls),
reports each kernel's achieved bandwidth (bytes read + written / time) against a measured
device-to-device copy, times cuBLAS (+ epilogue) against the tiled GEMM at the lecture's
layer shapes for batch sizes 32 to 65536 and prints the ``gemm_routes`` table those timings
suggest, and times a whole training step with the fused and the unfused ops (which GEMM a CUDA
graph can capture is ``graph_probe.py``'s, a stage of its own). Whole ops are
timed through ``CupyOps`` against ``NumpyOps(cupy)``; the two linear-layer kernels, which are
parts of an op, through their launcher. ``benchmarks/gpu_check.sh`` runs it. Run from the source tree: ``python benchmarks/gpu_check.py --out kernels.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import cupy
import numpy as np

import gpunet as gn
from gpunet.bench.variants import mlp_layers
from gpunet.ops.cupy_ops import CupyOps
from gpunet.ops.launchers import linear_relu
from gpunet.ops.numpy_ops import NumpyOps

from benchmarks.device_timing import time_ms  # run from the source tree (PYTHONPATH=$PWD)

LAYERS = [(784, 512), (512, 512), (512, 10)]  # the lecture's 784-512-512-10 MLP
GEMM_BATCHES = [32, 128, 512, 2048, 8192, 32768, 65536]
KERNEL_BATCH = 65536
STEP_BATCHES = [256, 4096, 65536]


def log(text):
    print(text, flush=True)


def copy_bandwidth():
    """Device-to-device copy of 512 MiB: GB/s counting bytes read + written."""
    nbytes = 512 * 2**20
    src, dst = cupy.ones(nbytes // 4, np.float32), cupy.empty(nbytes // 4, np.float32)
    stream = cupy.cuda.get_current_stream()
    ms = time_ms(lambda: dst.data.copy_from_device_async(src.data, nbytes, stream), calls=5)
    return 2 * nbytes / ms / 1e6


def rand(*shape, dtype=np.float32):
    return cupy.random.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)


def kernel_cases(fused, unfused, batch):
    """(name, shape, bytes moved by the fused kernel, fused call, unfused call)."""
    n_in, n_out = LAYERS[0]
    out, bias, grad = rand(batch, n_out), rand(n_out), rand(batch, n_out)
    saved, grad_z, grad_bias = cupy.maximum(rand(batch, n_out), 0), rand(batch, n_out), rand(n_out)
    classes = LAYERS[-1][1]
    logits, labels = rand(batch, classes), cupy.random.randint(0, classes, batch)
    logit_grad = cupy.empty_like(logits)
    size = sum(a * b + b for a, b in LAYERS)
    param, pgrad, v, m, lr, step = (rand(size), rand(size), rand(size), rand(size),
                                    cupy.full(1, 1e-3, np.float32), cupy.ones(1, np.float32))
    v2 = cupy.abs(rand(size))
    f4, e = 4, batch * n_out
    sgd = dict(momentum=0.9, weight_decay=1e-4, nesterov=False)
    adam = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, decoupled=True)

    def unfused_bias_relu():
        out.__iadd__(bias)
        cupy.maximum(out, 0, out=out)

    def unfused_mask_bias_grad():
        cupy.sign(saved, out=grad_z)
        grad_z.__imul__(grad)
        grad_z.sum(axis=0, out=grad_bias)

    return [
        ("bias_relu_epilogue", (batch, n_out), f4 * (2 * e + n_out),
         lambda: linear_relu.bias_act(out, bias, True), unfused_bias_relu),
        ("relu_mask_bias_grad", (batch, n_out), f4 * (3 * e + n_out),
         lambda: linear_relu.mask_bias_grad(grad, saved, grad_z, grad_bias, fused.workspace),
         unfused_mask_bias_grad),
        ("softmax_cross_entropy", (batch, classes), f4 * 2 * batch * classes + 8 * batch,
         lambda: fused.softmax_cross_entropy(logits, labels, logit_grad),
         lambda: unfused.softmax_cross_entropy(logits, labels, logit_grad)),
        ("sgd_momentum_update", (size,), f4 * 5 * size,
         lambda: fused.sgd_update(param, pgrad, v, lr, **sgd),
         lambda: unfused.sgd_update(param, pgrad, v, lr, **sgd)),
        ("adamw_update", (size,), f4 * 7 * size,
         lambda: fused.adam_update(param, pgrad, m, v2, lr, step, **adam),
         lambda: unfused.adam_update(param, pgrad, m, v2, lr, step, **adam)),
    ]


def bench_kernels(copy_gbps):
    fused, unfused = CupyOps(), NumpyOps(cupy)
    rows = []
    for name, shape, nbytes, fused_fn, unfused_fn in kernel_cases(fused, unfused, KERNEL_BATCH):
        fused_ms, unfused_ms = time_ms(fused_fn), time_ms(unfused_fn)
        gbps = nbytes / fused_ms / 1e6
        rows.append({"kernel": name, "shape": list(shape), "bytes": nbytes,
                     "fused_ms": fused_ms, "unfused_ms": unfused_ms,
                     "speedup": unfused_ms / fused_ms, "fused_GBps": gbps,
                     "fraction_of_copy": gbps / copy_gbps})
        log(f"{name:24s} {str(shape):14s} fused {fused_ms * 1e3:9.1f} us  unfused "
            f"{unfused_ms * 1e3:9.1f} us  x{unfused_ms / fused_ms:5.2f}  {gbps:7.0f} GB/s "
            f"({100 * gbps / copy_gbps:4.0f}% of copy)")
    return rows


def gemm_products(ops, batch, n_in, n_out):
    """One layer's GEMM work through ``ops``' routing, as (name, M*N*K per GEMM, GEMMs, call):
    the forward (GEMM + bias + ReLU) and the backward without bias (weight- and
    input-gradient GEMMs, the same M*N*K each)."""
    x, w, b = rand(batch, n_in), rand(n_out, n_in), rand(n_out)
    out, dz, dw, dx = rand(batch, n_out), rand(batch, n_out), rand(n_out, n_in), rand(batch, n_in)
    work = batch * n_in * n_out
    return [("forward_bias_relu", work, 1, lambda: ops.linear_relu_forward(x, w, b, out)),
            ("backward_weight_input", work, 2,
             lambda: ops.linear_backward(dz, x, w, dw, None, dx))]


def bench_gemm():
    rows = []
    for n_in, n_out in LAYERS:
        for batch in GEMM_BATCHES:
            timings = {}
            for route in ("cublas", "tiled"):
                ops = CupyOps()
                ops.gemm_routes = ((math.inf, route),)
                for product, work, gemms, fn in gemm_products(ops, batch, n_in, n_out):
                    timings.setdefault(product, {"flops": 2 * work * gemms, "work": work})
                    timings[product][route] = time_ms(fn, samples=5)
            for product, t in timings.items():
                flops = t["flops"]
                winner = min(("cublas", "tiled"), key=t.get)
                rows.append({"product": product, "layer": [n_in, n_out], "batch": batch,
                             "work": t["work"], "cublas_ms": t["cublas"],
                             "tiled_ms": t["tiled"], "winner": winner,
                             "tiled_GFLOPs": flops / t["tiled"] / 1e6,
                             "cublas_GFLOPs": flops / t["cublas"] / 1e6})
                log(f"gemm {product:21s} {n_in:4d}x{n_out:<4d} batch {batch:6d}  cuBLAS "
                    f"{t['cublas'] * 1e3:9.1f} us  tiled {t['tiled'] * 1e3:9.1f} us  -> {winner}")
    return rows


def suggest_routes(rows):
    """Runs of equal winners in order of work, as ``gemm_routes`` (upper bound, route) pairs.

    A bound sits halfway (geometrically) between the last point of a run and the next
    point; the last run is open-ended. Mixed verdicts at equal work go to cuBLAS, and a
    trailing cuBLAS run is left out (cuBLAS is the default).
    """
    by_work = {}
    for r in rows:
        by_work.setdefault(r["work"], set()).add(r["winner"])
    points = sorted((w, "tiled" if v == {"tiled"} else "cublas") for w, v in by_work.items())
    routes = []
    for (work, route), nxt in zip(points, points[1:] + [None]):
        if nxt is not None and nxt[1] == route:
            continue
        bound = math.inf if nxt is None else math.sqrt(work * nxt[0])
        routes.append((bound, route))
    if routes and routes[-1][1] == "cublas":
        routes.pop()
    return routes


def bench_train_step():
    rows = []
    backend = gn.get_backend("gpu")
    for batch in STEP_BATCHES:
        gn.manual_seed(0)
        widths = [LAYERS[0][0], *(n_out for _, n_out in LAYERS)]
        model = gn.Sequential(*mlp_layers(widths, gn.Linear, gn.ReLU)).to("gpu")
        opt = gn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = gn.CrossEntropyLoss()
        x, y = rand(batch, 784), cupy.random.randint(0, 10, batch)

        def step():
            loss_fn(model(x), y)
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()

        timings = {}
        for variant, ops in (("fused", CupyOps()), ("unfused", NumpyOps(cupy))):
            backend.ops = ops
            timings[variant] = time_ms(step, samples=5, calls=5)
        backend.ops = CupyOps()
        rows.append({"batch": batch, "fused_ms": timings["fused"],
                     "unfused_ms": timings["unfused"],
                     "speedup": timings["unfused"] / timings["fused"],
                     "fused_samples_per_s": batch / timings["fused"] * 1e3})
        log(f"train step batch {batch:6d}  fused {timings['fused']:8.3f} ms  unfused "
            f"{timings['unfused']:8.3f} ms  x{timings['unfused'] / timings['fused']:5.2f}")
    return rows


def routes_json(routes):
    """``gemm_routes`` as JSON: an infinite bound becomes the string "inf"."""
    return [["inf" if bound == math.inf else bound, route] for bound, route in routes]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where to write the JSON result")
    parser.add_argument("--rehearsal", action="store_true",
                        help="batches of at most 512 rows, for a run on the CuPy stand-in "
                             "(benchmarks/gpu_check_standin.py): its timings mean nothing")
    args = parser.parse_args()
    if args.rehearsal:  # the stand-in emulates every CUDA thread on the CPU
        global KERNEL_BATCH, GEMM_BATCHES, STEP_BATCHES
        KERNEL_BATCH, GEMM_BATCHES, STEP_BATCHES = 512, [32, 512], [32, 256]
    started = time.perf_counter()
    gn.warmup()
    compile_s = time.perf_counter() - started
    log(f"warmup (compile or load from CuPy's cache): {compile_s:.2f} s")
    copy_gbps = copy_bandwidth()
    log(f"device-to-device copy: {copy_gbps:.0f} GB/s (read + written)")
    result = {"warmup_s": compile_s, "copy_GBps": copy_gbps, "kernel_batch": KERNEL_BATCH,
              "gemm_routes": routes_json(CupyOps().gemm_routes),
              "kernels": bench_kernels(copy_gbps)}
    result["gemm"] = bench_gemm()
    result["suggested_gemm_routes"] = routes_json(suggest_routes(result["gemm"]))
    log(f"current gemm_routes: {result['gemm_routes']}; suggested by these timings: "
        f"{result['suggested_gemm_routes']}")
    result["train_step"] = bench_train_step()
    result["total_s"] = time.perf_counter() - started
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    log(f"wrote {args.out} ({result['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
