"""What compute-sanitizer checks: a short training run, then the kernel tests at small shapes.

    compute-sanitizer --tool memcheck python benchmarks/gpu_sanitize.py \\
        --deadline EPOCH_SECONDS --junitxml memcheck.xml tests/test_cupy_ops.py
    compute-sanitizer --tool memcheck python benchmarks/gpu_sanitize.py --canary

CuPy's memory pool is switched off first, so each array is its own allocation and an access
past its end is reported instead of landing in a pooled neighbour. The training run covers
both GEMM routes, SGD (Nesterov, weight decay) and AdamW, int32 labels, batch 1 and 33, and
models whose biases sit at unaligned offsets of the flat parameter buffer (3-7-5: offsets 21
and 63; 2-5-8-3: a width-8 bias at offset 55). Of the kernel tests (``-m gpu``), a test
parametrised with an integer above ``SMALL`` (or with 5 digits in its name) is left out —
the tests stage ran it without the sanitizer — and tests not started by ``--deadline`` are
skipped with a reason. ``--canary`` makes one deliberate out-of-bounds read instead: the
positive control that shows the sanitizer really instruments kernels on this machine.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
import time
import traceback

import cupy
import numpy as np
import pytest

import gpu_summary  # benchmarks/ (this script's folder): records markers in the JUnit XML
import gpunet as gn
from gpunet.bench.variants import mlp_layers
from gpunet.ops.cupy_ops import CupyOps

SMALL = 4096
WIDTHS = ((3, 7, 5), (2, 5, 8, 3), (130, 70, 10))  # unaligned biases; tiles crossed (130 > 64)
BATCHES = (1, 33)
STEPS = 3
OPTIMIZERS = {
    "sgd": lambda p: gn.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "adamw": lambda p: gn.optim.AdamW(p, lr=1e-3),
}
CANARY = r"""
extern "C" __global__ void gpunet_sanitizer_canary(const float* x, float* y) {
    y[threadIdx.x] = x[threadIdx.x];  // x holds one float: threads 1.. read past its end
}
"""


def canary() -> None:
    """Read past the end of a one-float allocation (memcheck must report it)."""
    x, y = cupy.zeros(1, np.float32), cupy.zeros(32, np.float32)
    cupy.RawKernel(CANARY, "gpunet_sanitizer_canary")((1,), (32,), (x, y))
    cupy.cuda.Device().synchronize()
    print("canary launched: memcheck should report reads past the end of a 4-byte allocation")


def train(widths, route: str, optimizer: str) -> float:
    """A few steps of one model on one GEMM route; the last loss."""
    backend = gn.get_backend("gpu")
    previous, backend.ops = backend.ops, CupyOps()
    backend.ops.gemm_routes = ((math.inf, route),)
    try:
        gn.manual_seed(0)
        model = gn.Sequential(*mlp_layers(widths, gn.Linear, gn.ReLU)).to("gpu")
        opt, loss_fn = OPTIMIZERS[optimizer](model.parameters()), gn.CrossEntropyLoss()
        for batch in BATCHES:
            x = cupy.random.standard_normal((batch, widths[0]), dtype=np.float32)
            y = cupy.random.randint(0, widths[-1], batch).astype(np.int32)
            for _ in range(STEPS):
                loss = loss_fn(model(x), y)
                model.backward(loss_fn.backward())
                opt.step()
        backend.ops.check_errors()
        return float(loss)
    finally:
        backend.ops = previous


def train_all() -> bool:
    """Every model, route and optimizer; False when one raised or gave a non-finite loss."""
    ok = True
    for widths in WIDTHS:
        for route in ("cublas", "tiled"):
            for optimizer in OPTIMIZERS:
                name = f"train {'-'.join(map(str, widths))} {route} {optimizer}"
                try:
                    loss = train(widths, route, optimizer)
                except Exception:  # noqa: BLE001 - reported, then the tests still run
                    print(f"{name}: FAILED\n{traceback.format_exc()}", flush=True)
                    ok = False
                    continue
                ok &= math.isfinite(loss)
                print(f"{name}: loss {loss:.4f}", flush=True)
    return ok


def is_small(item) -> bool:
    """No integer parameter above SMALL and no 5-digit number in the test's name."""
    spec = getattr(item, "callspec", None)
    values = []
    for value in (spec.params.values() if spec else ()):
        values += list(value) if isinstance(value, (tuple, list)) else [value]
    big = any(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > SMALL
              for v in values)
    return not big and not re.search(r"\d{5,}", item.name)


class SmallShapesInTime:
    """pytest plugin: keep the small-shape tests; skip those not started by the deadline."""

    def __init__(self, deadline: float):
        self.deadline = deadline

    def pytest_collection_modifyitems(self, config, items):
        left_out = [item for item in items if not is_small(item)]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if is_small(item)]
            print(f"\n{len(left_out)} tests with a size above {SMALL} left out of this run")

    def pytest_runtest_setup(self, item):
        if time.time() > self.deadline:
            pytest.skip("not run under the sanitizer: its time budget was spent")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tests", nargs="*", help="kernel test files (their -m gpu tests run)")
    parser.add_argument("--canary", action="store_true", help="only the deliberate bad read")
    parser.add_argument("--deadline", type=float, default=math.inf,
                        help="Unix time after which no further test starts")
    parser.add_argument("--junitxml", help="JUnit XML of the kernel tests")
    args = parser.parse_args(argv)
    cupy.cuda.set_allocator(None)  # one allocation per array: the sanitizer sees its bounds
    if args.canary:
        canary()
        return 0
    trained = train_all()
    rc = 0
    if args.tests:
        options = ["-m", "gpu", "-q", "-p", "no:cacheprovider", "-rfE", "--tb=short"]
        if args.junitxml:
            options.append(f"--junitxml={args.junitxml}")
        rc = pytest.main([*options, *args.tests],
                         plugins=[gpu_summary, SmallShapesInTime(args.deadline)])
    return int(rc) or (0 if trained else 1)


if __name__ == "__main__":
    sys.exit(main())
