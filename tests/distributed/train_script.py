"""Run under mpiexec by tests/test_distributed.py (also in one process, as the reference):
train a small MLP with ``fit`` and save the weights and history of each graph mode.

    python train_script.py OUT DEVICE [fail]

With ``GPUNET_STANDIN_PROCESS=1`` the GPU is the CuPy stand-in (``tests/standin.py``).
"""
import json
import os
import sys

import numpy as np

if os.environ.get("GPUNET_STANDIN_PROCESS") == "1":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import standin  # noqa: F401  (makes the stand-in this process's cupy)

import gpunet as gn  # noqa: E402

STEPS_DATA = dict(n=2001, features=12, classes=3)  # 2001 rows: a smaller last batch
EPOCHS, BATCH = 4, 32  # 63 steps an epoch, 252 steps


def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(STEPS_DATA["n"], STEPS_DATA["features"])).astype(np.float32)
    y = (X[:, :3].sum(1) > 0).astype(np.int64) + (X[:, 3] > 1)
    return X, y


def train(graph, device, comm=None, on_epoch_end=None):
    gn.manual_seed(3)
    model = gn.Sequential(gn.Linear(12, 32), gn.ReLU(), gn.Linear(32, 32), gn.ReLU(),
                          gn.Linear(32, 3)).to(device)
    opt = gn.optim.Adam(model.parameters(), lr=3e-3)
    history = gn.fit(model, gn.CrossEntropyLoss(), opt, data(), val_split=0.1,
                     epochs=EPOCHS, batch_size=BATCH, seed=5, progress=False, verbose=False,
                     graph=graph, distributed=comm, on_epoch_end=on_epoch_end)
    return gn.to_numpy(opt.flat.data), history.records


def main(out, device, fail=False):
    comm = gn.distributed.init(device)

    def on_epoch_end(record):
        if fail and comm.rank == 1:
            raise RuntimeError("bad labels on rank 1's shard (injected)")

    results = {}
    for graph in ("auto", "off"):
        weights, records = train(graph, device, comm, on_epoch_end)
        results[graph] = records
        if comm.rank == 0:
            np.save(f"{out}-{graph}.npy", weights)
    if comm.rank == 0:
        with open(f"{out}.json", "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], len(sys.argv) > 3)
