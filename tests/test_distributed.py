"""Data-parallel training (gpunet.distributed): the shard arithmetic in one process, and
real ``mpiexec -n 2`` jobs on the CPU (skipped where mpi4py or mpiexec is missing). Every
subprocess has a timeout: a hang fails the test instead of stalling CI."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gpunet as gn
import standin
from gpunet.data.shard import Shard

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "distributed" / "train_script.py"
sys.path.insert(0, str(SCRIPT.parent))
import train_script  # noqa: E402

LAUNCHER_VARS = ("PMI_", "OMPI_", "PMIX_", "SLURM_", "MPI_LOCAL", "HYDRA_")


def _mpiexec():
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


def _env():
    """The environment of a job: one BLAS thread per rank (2 ranks share 2 cores)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARS)}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _needs_mpi():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed (pip install 'gpunet[distributed]')")
    if _mpiexec() is None:
        pytest.skip("no mpiexec on PATH (pip install mpich)")


def _launch(ranks, *args, timeout=90, cwd=None, env=None):
    _needs_mpi()
    command = [_mpiexec(), "-n", str(ranks), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**_env(), **(env or {})}, cwd=cwd)


def _gpunet(*args):
    return [sys.executable, "-m", "gpunet", *map(str, args)]


# -- the shard arithmetic (no MPI) ---------------------------------------------------------
@pytest.mark.parametrize("n, batch, size, drop_last", [(100, 8, 2, False), (101, 12, 4, False),
                                                      (103, 9, 3, True), (64, 64, 4, False),
                                                      (37, 8, 2, False)])
def test_shards_cover_every_global_batch_once(n, batch, size, drop_last):
    shards = [Shard(n, batch, drop_last, r, size) for r in range(size)]
    loader = gn.DataLoader(np.arange(n), np.arange(n), batch, shuffle=False, drop_last=drop_last)
    global_batches = [set(b.tolist()) for b, _ in loader]
    for step, rows in enumerate(global_batches):
        parts = []
        for s in shards:
            start = int(s.step_rows[:step].sum())
            parts.append(s.positions[start:start + s.step_rows[step]].tolist())
        assert sorted(sum(parts, [])) == sorted(rows)
        weights = [s.weights[step] for s in shards]
        assert sum(weights) == pytest.approx(1.0)
        assert all(w == pytest.approx(len(p) / len(rows)) for w, p in zip(weights, parts))


def test_sharded_loaders_take_their_slice_of_the_same_permutation():
    X = np.arange(50, dtype=np.float32)[:, None]
    gn.manual_seed(1)
    single = [xb[:, 0].tolist() for xb, _ in gn.DataLoader(X, X[:, 0], 10)]
    ranks = []
    for rank in range(2):
        gn.manual_seed(1)
        ranks.append([xb[:, 0].tolist() for xb, _ in
                      gn.DataLoader(X, X[:, 0], 10, shard=(rank, 2))])
    assert [a + b for a, b in zip(*ranks)] == single


def test_a_global_batch_that_does_not_split_is_refused_naming_both_numbers():
    with pytest.raises(ValueError, match=r"batch_size 33 is the global batch.*2 ranks.*"
                                         r"multiple of 2 \(e.g. 32 or 34\)"):
        Shard(100, 33, False, 0, 2)
    with pytest.raises(ValueError, match="last batch of an epoch holds 1 samples"):
        Shard(9, 4, False, 0, 2)  # 4 + 4 + 1


def test_importing_gpunet_does_not_import_mpi4py():
    code = "import sys, gpunet; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=_env())
    assert out.stdout.strip() == "False", out.stderr


def test_distributed_without_a_launcher_says_how_to_launch(tmp_path):
    out = subprocess.run(_gpunet("train", "--distributed", "--dataset", "xor", "--device", "cpu",
                                 "--out", tmp_path / "run"), capture_output=True, text=True,
                         timeout=60, env=_env())
    assert out.returncode == 2
    assert "needs an MPI launcher" in out.stderr
    assert "mpiexec -n 2 gpunet train --distributed" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()


# -- real jobs under mpiexec ---------------------------------------------------------------
def test_two_ranks_train_as_one_process_on_the_global_batch(tmp_path):
    """252 steps (a smaller last batch every epoch), the static step and eager: the weights
    of 2 ranks match one process within 1e-5 relative; the metrics to 4 decimals."""
    job = _launch(2, sys.executable, SCRIPT, tmp_path / "dp", "cpu")
    assert job.returncode == 0, job.stderr[-3000:]
    results = json.loads((tmp_path / "dp.json").read_text())
    for graph in ("auto", "off"):
        weights, records = train_script.train(graph, "cpu")
        parallel = np.load(tmp_path / f"dp-{graph}.npy")
        assert np.abs(parallel - weights).max() <= 1e-5 * np.abs(weights).max(), graph
        for mine, theirs in zip(records, results[graph], strict=True):
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                assert round(mine[key], 4) == round(theirs[key], 4), (graph, key)


def test_a_rank_that_raises_ends_the_job_naming_the_rank(tmp_path):
    started = time.perf_counter()
    job = _launch(2, sys.executable, SCRIPT, tmp_path / "dp", "cpu", "fail", timeout=60)
    elapsed = time.perf_counter() - started
    assert job.returncode != 0
    assert elapsed < 30, f"the job took {elapsed:.0f} s to end"
    assert job.stderr.count("RuntimeError: bad labels on rank 1's shard") == 1, job.stderr
    assert "[rank 1 of 2]" in job.stderr
    assert not (tmp_path / "dp.json").exists()


def test_cli_two_ranks_write_one_run_and_one_rank_resumes_it(tmp_path):
    common = ["--dataset", "xor", "--hidden", "16", "--device", "cpu", "--no-progress",
              "--schedule", "none"]  # cosine depends on the total epochs
    job = _launch(2, *_gpunet("train", "--distributed", *common, "--epochs", "2",
                              "--out", "dp"), cwd=tmp_path)
    assert job.returncode == 0, job.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dp"]  # no second run folder
    files = sorted(p.name for p in (tmp_path / "dp").iterdir())
    assert files == ["checkpoint.npz", "curves.png", "metrics.csv", "metrics.json"]
    assert job.stdout.count("epoch 2/2") == 1 and "distributed: 2 ranks" in job.stdout
    resumed = subprocess.run(_gpunet("train", "--resume", "dp/checkpoint.npz", "--epochs", "3",
                                     "--no-progress"),
                             capture_output=True, text=True, timeout=120, env=_env(),
                             cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = subprocess.run(_gpunet("train", *common, "--epochs", "3", "--out", "one"),
                           capture_output=True, text=True, timeout=120, env=_env(), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    records = [json.loads((tmp_path / d / "metrics.json").read_text())["epochs"]
               for d in ("dp", "one")]
    assert [r["epoch"] for r in records[0]] == [1, 2, 3]
    for a, b in zip(*records, strict=True):
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            assert round(a[key], 4) == round(b[key], 4), (a["epoch"], key)


def test_cli_error_every_rank_meets_is_printed_once(tmp_path):
    job = _launch(2, *_gpunet("train", "--distributed", "--dataset", "xor", "--device", "cpu",
                              "--batch-size", "33", "--out", "dp"), cwd=tmp_path, timeout=60)
    assert job.returncode == 2
    assert job.stderr.count("batch_size 33 is the global batch") == 1, job.stderr


def _gpu_job_env(**extra):
    """The environment of a GPU job's ranks: on the stand-in, two stand-in devices and the
    stand-in loaded in each rank (``tests/standin.py``)."""
    if not standin.active():
        return {}
    return dict(GPUNET_STANDIN_PROCESS="1", GPUNET_STANDIN_DEVICES="2", **extra)


@pytest.mark.gpu
def test_nccl_path_matches_one_process_on_the_gpu(tmp_path):
    """One rank per GPU the device has (one on a single-GPU machine: the NCCL path, the
    captured all-reduce included, still runs end to end); on the stand-in two ranks, each
    on its own stand-in device, NCCL over MPI."""
    import cupy

    ranks = 2 if standin.active() else cupy.cuda.runtime.getDeviceCount()
    job = _launch(ranks, sys.executable, SCRIPT, tmp_path / "dp", "gpu", timeout=300,
                  env=_gpu_job_env())
    assert job.returncode == 0, job.stderr[-3000:]
    results = json.loads((tmp_path / "dp.json").read_text())
    for graph in ("auto", "off"):
        weights, records = train_script.train(graph, "gpu")
        parallel = np.load(tmp_path / f"dp-{graph}.npy")
        assert np.abs(parallel - weights).max() <= 1e-4 * np.abs(weights).max(), graph
        assert round(records[-1]["val_loss"], 3) == round(results[graph][-1]["val_loss"], 3)


@pytest.mark.gpu
def test_the_device_engine_reduces_broadcasts_refuses_and_aborts():
    """Each collective of the NCCL engine, a strided array refused, then a failing rank
    ending the job through NCCL's abort (one rank per GPU; two on the stand-in)."""
    import cupy

    ranks = 2 if standin.active() else cupy.cuda.runtime.getDeviceCount()
    script = HERE / "distributed" / "engine_script.py"
    job = _launch(ranks, sys.executable, script, "gpu", timeout=120, env=_gpu_job_env())
    assert job.returncode == 0, job.stderr[-3000:]
    assert job.stdout.count("collectives ok") == ranks, job.stdout
    started = time.monotonic()
    job = _launch(ranks, sys.executable, script, "gpu", "fail", timeout=120,
                  env=_gpu_job_env())
    assert job.returncode == 1, job.stderr[-3000:]
    assert f"[rank {ranks - 1} of {ranks}]" in job.stderr
    assert f"RuntimeError: injected failure on rank {ranks - 1}" in job.stderr
    assert time.monotonic() - started < 60


@pytest.mark.gpu
def test_missing_nccl_is_a_distributed_error_on_every_rank(tmp_path):
    """CuPy without NCCL: ``cupy.cuda.nccl`` holds only ``available = False``; every rank
    raises DistributedError naming the fix, and the job ends (no rank waits for another)."""
    if not standin.active():
        pytest.skip("switches NCCL off, which only the stand-in can do")
    started = time.monotonic()
    job = _launch(2, sys.executable, SCRIPT, tmp_path / "dp", "gpu", timeout=120,
                  env=_gpu_job_env(GPUNET_STANDIN_NCCL="off"))
    assert job.returncode != 0
    assert job.stderr.count("DistributedError: the GPU engine needs NCCL (CuPy found no NCCL "
                            "library") == 2, job.stderr[-3000:]
    assert "pip install nvidia-nccl-cu13" in job.stderr
    assert time.monotonic() - started < 60


# -- gpunet bench --distributed -------------------------------------------------------------
def test_bench_distributed_reports_totals_from_rank_0(tmp_path):
    job = _launch(2, *_gpunet("bench", "--distributed", "--device", "cpu", "--variants", "numpy",
                              "--batch-sizes", "32", "--hidden", "16", "--samples", "128",
                              "--repeats", "1", "--warmup", "1", "--steps", "3",
                              "--out", tmp_path / "b"))
    assert job.returncode == 0, job.stderr[-3000:]
    assert job.stdout.count("samples/s") == 1, job.stdout  # rank 0 alone prints the table
    assert "distributed over 2 ranks" in job.stderr
    record = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert record["config"]["ranks"] == 2 and record["config"]["steps"] == 3
    assert [row["status"] for row in record["results"]] == ["ok"]


def test_bench_distributed_refuses_uneven_batches_and_a_missing_launcher(tmp_path):
    job = _launch(2, *_gpunet("bench", "--distributed", "--device", "cpu", "--variants", "numpy",
                              "--batch-sizes", "33"))
    assert job.returncode == 2
    assert job.stderr.count("needs batch sizes that are multiples of 2, got [33]") == 1
    alone = subprocess.run(_gpunet("bench", "--distributed", "--device", "cpu"),
                           capture_output=True, text=True, timeout=60, env=_env())
    assert alone.returncode == 2 and "mpiexec -n" in alone.stderr
