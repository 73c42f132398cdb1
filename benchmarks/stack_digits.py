"""Many models at once on the CPU: sklearn's digits (1,797 x 64, standardised), a 64-64-10
ReLU MLP, 32 models (8 learning rates x 4 seeds), SGD with momentum 0.9, 50 epochs at batch
200, trained three ways, interleaved round by round (the median of the rounds is reported):

- ``stack``: one ``gn.stack`` of the 32 models through ``gn.fit``;
- ``sequential``: 32 ``gn.fit`` calls, one model after another;
- ``torch.func``: PyTorch's ``stack_module_state`` + ``functional_call`` + ``vmap(grad)``
  with the same per-model SGD update, written by hand.

All three see the same data order per epoch (one shared shuffle). ``--threads`` sets the BLAS
and torch threads of all three (default 2, the cores; on a busy 2-core machine 1 is steadier:
two BLAS threads of small GEMMs wait on each other). Prints one line per run and a summary;
``--json PATH`` writes the times.

    python benchmarks/stack_digits.py [--rounds 3] [--threads 2] [--json out.json]
"""
import argparse
import json
import statistics
import time

import numpy as np

import gpunet as gn

EPOCHS, BATCH, SEEDS = 50, 200, 4
THREADS = [2]  # set by --threads
LRS = [0.003, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3]


def blas_threads(count):
    """Every way's BLAS (NumPy's OpenBLAS) and torch runs ``count`` threads."""
    from threadpoolctl import threadpool_limits

    THREADS[0] = count
    threadpool_limits(count)


def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)
    return X.astype(np.float32), y.astype(np.int64)


def grid():
    """Per model: (learning rate, seed), the seed varying fastest."""
    return [(lr, seed) for lr in LRS for seed in range(SEEDS)]


def architecture():
    return gn.Sequential(gn.Linear(64, 64), gn.ReLU(), gn.Linear(64, 10))


def orders(n, seed=0):
    """The data order of every epoch, shared by all three ways."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(EPOCHS)]


def run_stack(X, y):
    models = gn.stack(architecture(), len(grid()), seeds=[s for _, s in grid()])
    opt = gn.optim.SGD(models.parameters(), lr=[lr for lr, _ in grid()], momentum=0.9)
    started = time.perf_counter()
    histories = gn.fit(models, gn.CrossEntropyLoss(), opt, (X, y), epochs=EPOCHS,
                       batch_size=BATCH, seed=0, progress=False, verbose=False)
    seconds = time.perf_counter() - started
    return seconds, [h.records[-1]["train_accuracy"] for h in histories]


def run_sequential(X, y):
    accuracies, seconds = [], 0.0
    for lr, seed in grid():
        model = gn.stack(architecture(), 1, seeds=[seed])[0]  # the same initial weights
        opt = gn.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        started = time.perf_counter()
        history = gn.fit(model, gn.CrossEntropyLoss(), opt, (X, y), epochs=EPOCHS,
                         batch_size=BATCH, seed=0, progress=False, verbose=False)
        seconds += time.perf_counter() - started
        accuracies.append(history.records[-1]["train_accuracy"])
    return seconds, accuracies


def run_torch(X, y):
    import torch
    from torch.func import functional_call, grad, stack_module_state, vmap

    torch.set_num_threads(THREADS[0])
    stack_of = gn.stack(architecture(), len(grid()), seeds=[s for _, s in grid()])
    state = {k: torch.from_numpy(v.copy()) for k, v in stack_of.state_dict().items()}
    models = []
    for i in range(len(grid())):
        model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                    torch.nn.Linear(64, 10))
        model.load_state_dict({k: v[i] for k, v in state.items()})
        models.append(model)
    params, buffers = stack_module_state(models)
    base = models[0]

    def loss_of(p, b, xb, yb):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    per_model_grad = vmap(grad(loss_of), in_dims=(0, 0, None, None))
    lrs = torch.tensor([lr for lr, _ in grid()])
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    gn.manual_seed(0)
    started = time.perf_counter()
    for order in torch_orders(len(X)):
        for start in range(0, len(X), BATCH):
            rows = order[start:start + BATCH]
            grads = per_model_grad(params, buffers, Xt[rows], yt[rows])
            with torch.no_grad():
                for k, g in grads.items():
                    v = velocity[k]
                    v.mul_(0.9).add_(g)
                    params[k].sub_(lrs.view(-1, *(1,) * (g.ndim - 1)) * v)
    seconds = time.perf_counter() - started
    with torch.no_grad():
        logits = vmap(functional_call, in_dims=(None, (0, 0), None))(base, (params, buffers),
                                                                      (Xt,))
        accuracies = (logits.argmax(-1) == yt).float().mean(-1).tolist()
    return seconds, accuracies


def torch_orders(n):
    """gn.fit(seed=0)'s shuffles (the same generator calls), so torch sees the same data."""
    from gpunet.training.loop.fit import _epoch_seed
    import torch

    for epoch in range(EPOCHS):
        gn.manual_seed(_epoch_seed(0, epoch))
        yield torch.from_numpy(np.asarray(gn.get_backend("cpu").permutation(n)))


WAYS = {"stack": run_stack, "sequential": run_sequential, "torch.func": run_torch}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2,
                        help="BLAS and torch threads of every way (default: 2, the cores)")
    parser.add_argument("--json", help="write the times here")
    args = parser.parse_args()
    blas_threads(args.threads)
    X, y = digits()
    times: dict = {name: [] for name in WAYS}
    accuracy: dict = {}
    for round_ in range(args.rounds):
        for name, run in WAYS.items():
            seconds, accuracies = run(X, y)
            times[name].append(seconds)
            accuracy[name] = accuracies
            print(f"round {round_ + 1}: {name:<10} {seconds:7.2f} s  final training accuracy "
                  f"median {100 * np.median(accuracies):.1f}%", flush=True)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"32 models of 64-64-10, {EPOCHS} epochs at batch {BATCH} on {len(X)} samples; "
          f"median of {args.rounds} rounds:")
    for name, seconds in median.items():
        print(f"  {name:<10} {seconds:7.2f} s  ({median['stack'] and seconds / median['stack']:.2f}"
              f" x the stack's time)")
    print(f"stack vs sequential: {median['sequential'] / median['stack']:.2f}x faster; "
          f"stack vs torch.func: {median['torch.func'] / median['stack']:.2f}x faster")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "times": times, "median": median,
                       "final_train_accuracy": accuracy}, f,
                      indent=1)


if __name__ == "__main__":
    main()
