"""Many models at once on the GPU: 64 models of the lecture's 784-512-512-10 ReLU MLP at batch
128, trained as one stack through the captured step (``graph="on"``), against the same 64
models trained one after another by ``gn.fit`` (``graph="auto"``: captured where faster).
The target: the stack's model-samples per second >= 20x the sequential runs'.

Each way trains ``--epochs`` epochs on 60,000 samples (Fashion-MNIST's shape: synthetic uint8
images and labels unless ``--data fashion-mnist``); the last epoch is timed (the first pays
for compiling and recording). Prints one line per way and the ratio; ``--json PATH`` writes
them. ``--models``, ``--samples`` shrink it for a smoke run (``--device cpu`` runs the same
code on the CPU, uncaptured).

    python benchmarks/stack_gpu.py [--models 64] [--epochs 2] [--json out.json]
"""
import argparse
import json
import time

import numpy as np

import gpunet as gn

HIDDEN, BATCH = (512, 512), 128


def data(kind, samples):
    if kind == "fashion-mnist":
        (X, y), _ = gn.datasets.fashion_mnist(download=False)
        return X[:samples], y[:samples]
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (samples, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, samples).astype(np.int64))


def architecture(device):
    layers, width = [gn.Flatten()], 784
    for h in HIDDEN:
        layers += [gn.Linear(width, h), gn.ReLU()]
        width = h
    return gn.Sequential(*layers, gn.Linear(width, 10)).to(device)


def lrs(models):
    return list(np.geomspace(0.005, 0.1, models))


def fit(model, opt, train, epochs, graph):
    histories = gn.fit(model, gn.CrossEntropyLoss(), opt, train, epochs=epochs,
                       batch_size=BATCH, seed=0, progress=False, verbose=False, graph=graph)
    last = (histories[0] if isinstance(histories, list) else histories).records[-1]
    return len(train[0]) / last["samples_per_s"]  # the last epoch's training seconds


def run_stack(train, models, epochs, device, graph):
    stack = gn.stack(architecture(device), models, seeds=range(models))
    opt = gn.optim.SGD(stack.parameters(), lr=lrs(models), momentum=0.9)
    return fit(stack, opt, train, epochs, graph)


def run_sequential(train, models, epochs, device):
    seconds = 0.0
    for seed, lr in enumerate(lrs(models)):
        model = gn.stack(architecture(device), 1, seeds=[seed])[0]
        seconds += fit(model, gn.optim.SGD(model.parameters(), lr=lr, momentum=0.9), train,
                       epochs, "auto")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=60000)
    parser.add_argument("--data", choices=("synthetic", "fashion-mnist"), default="synthetic")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.device == "gpu":
        gn.warmup()
    train = data(args.data, args.samples)
    graph = "on" if args.device == "gpu" else "auto"
    started = time.perf_counter()
    stack_s = run_stack(train, args.models, args.epochs, args.device, graph)
    print(f"stack ({graph}): {args.models} models, last epoch {stack_s:.2f} s, "
          f"{args.models * args.samples / stack_s:,.0f} model-samples/s", flush=True)
    sequential_s = run_sequential(train, args.models, args.epochs, args.device)
    print(f"sequential: {args.models} runs, their last epochs {sequential_s:.2f} s, "
          f"{args.models * args.samples / sequential_s:,.0f} model-samples/s", flush=True)
    ratio = sequential_s / stack_s
    print(f"the stack's throughput: {ratio:.1f}x the sequential runs' (target >= 20x); "
          f"wall time {time.perf_counter() - started:.0f} s on {args.device}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**vars(args), "stack_seconds": stack_s,
                       "sequential_seconds": sequential_s, "ratio": ratio}, f, indent=1)


if __name__ == "__main__":
    main()
