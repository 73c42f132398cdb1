"""Cost of the copy-on-return rule: a hand-written loop step (``model(x)`` hands back a copy
of its output) against the same step inside gpunet's boundary (no copy), 784-512-512-10 at
batch 128, interleaved, median of 15 repeats of 50 steps (device synchronised on the GPU).

    python benchmarks/copy_cost.py [--device cpu|gpu]
"""
import argparse
import statistics
import time

import numpy as np

import gpunet as gn
from gpunet.nn.boundary import inside


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    device = parser.parse_args().device
    backend = gn.get_backend(device)
    gn.manual_seed(0)
    model = gn.Sequential(gn.Linear(784, 512), gn.ReLU(), gn.Linear(512, 512), gn.ReLU(),
                          gn.Linear(512, 10)).to(device)
    opt = gn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = gn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.random((128, 784), dtype=np.float32))
    y = backend.asarray(rng.integers(0, 10, 128))

    def step():
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()

    def step_inside():
        with inside():
            step()

    def sync():
        if backend.name == "gpu":
            backend.xp.cuda.get_current_stream().synchronize()

    def timed(run):
        sync()
        start = time.perf_counter()
        for _ in range(50):
            run()
        sync()
        return (time.perf_counter() - start) / 50 * 1e3

    variants = {"copy-on-return": step, "inside": step_inside}
    for run in variants.values():
        for _ in range(20):
            run()
    times: dict = {name: [] for name in variants}
    for _ in range(15):
        for name, run in variants.items():
            times[name].append(timed(run))
    median = {name: statistics.median(t) for name, t in times.items()}
    cost = 100 * (median["copy-on-return"] / median["inside"] - 1)
    print(f"{device}: ms per step, median of 15 x 50: copy-on-return "
          f"{median['copy-on-return']:.4f}, inside {median['inside']:.4f}; cost {cost:+.2f}%")


if __name__ == "__main__":
    main()
