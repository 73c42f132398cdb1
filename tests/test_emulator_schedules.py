"""Block scheduling: a kernel that depends on block order passes the sequential schedule and
fails the shuffled and concurrent ones; softmax_xent_finish's last-block ticket survives
blocks that really overlap, and breaking it is caught where the emulator can see it.

What the emulator cannot see: it runs on one OS thread with sequentially consistent memory,
so a store is visible to every block at once. Removing the ``__threadfence()`` before the
ticket, or the ``volatile`` on the last block's reads, breaks the kernel only on a GPU (whose
memory model lets another SM see the ticket before the part); those mutants pass here, as
the last test records.
"""
import numpy as np
import pytest

from cuda_emulator import scheduled
from emulator_support import load_test_kernels, real_module, replace_once, require_compiler
from gpunet.ops.launchers import softmax_xent

require_compiler()

SEEDS = range(6)


@pytest.fixture(scope="module")
def ordered():
    return load_test_kernels("order_dependent.cu", "running_total")


def running_total(module, blocks=48):
    values = np.arange(1, blocks + 1, dtype=np.int32)
    totals = np.zeros(blocks, np.int32)
    module.launch("running_total", blocks, 32, (values, totals))
    return totals, np.cumsum(values)


def test_an_order_dependent_kernel_passes_the_sequential_schedule(ordered):
    with scheduled("sequential"):
        totals, expected = running_total(ordered)
    np.testing.assert_array_equal(totals, expected)


@pytest.mark.parametrize("mode", ["shuffled", "concurrent"])
@pytest.mark.parametrize("seed", SEEDS)
def test_an_order_dependent_kernel_fails_shuffled_and_concurrent(ordered, mode, seed):
    with scheduled(mode, seed):
        totals, expected = running_total(ordered)
    assert (totals != expected).any()


# softmax_xent_finish launched by hand with a small chunk, so that many blocks take tickets
# (the launcher's own chunk needs 2,048 rows a block).
ROWS, CHUNK = 1000, 16
PARTS = -(-ROWS // CHUNK)


def finish(module, row_loss, row_hit, ticket, parts_poison=np.nan):
    """One launch of softmax_xent_finish; returns (loss, hits)."""
    part_loss = np.full(PARTS, parts_poison, np.float64)
    part_hit = np.full(PARTS, -10**9, np.int64)
    loss, hits = np.full((), np.nan, np.float32), np.full((), -1, np.int64)
    module.launch("softmax_xent_finish", PARTS, softmax_xent.FINISH_THREADS,
                  (row_loss, row_hit, part_loss, part_hit, ticket, loss, hits,
                   np.int32(ROWS), np.int32(CHUNK), None))
    return loss[()], hits[()]


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(5)
    return (rng.exponential(size=ROWS).astype(np.float32),
            rng.integers(0, 2, size=ROWS).astype(np.int32))


def finish_results(module, rows, mode, seed, calls=2):
    """(loss, hits) of ``calls`` launches in a row (the ticket must be reset between them)."""
    ticket = np.zeros(1, np.uint32)
    with scheduled(mode, seed):
        results = [finish(module, *rows, ticket) for _ in range(calls)]
    return results, ticket[0], module.last_stats


@pytest.fixture(scope="module")
def sequential_result(rows):
    module = real_module(softmax_xent.SOURCE)
    (first, second), ticket, _ = finish_results(module, rows, "sequential", 0)
    loss, hits = first
    assert hits == rows[1].sum() and ticket == 0 and first == second
    assert loss == pytest.approx(rows[0].astype(np.float64).mean(), rel=1e-7)
    return first


@pytest.mark.parametrize("mode", ["shuffled", "concurrent"])
@pytest.mark.parametrize("seed", SEEDS)
def test_the_finish_ticket_is_deterministic_in_every_schedule(rows, sequential_result, mode,
                                                              seed):
    module = real_module(softmax_xent.SOURCE)
    results, ticket, stats = finish_results(module, rows, mode, seed)
    assert results == [sequential_result] * 2 and ticket == 0  # bit for bit
    if mode == "concurrent":
        assert stats.max_resident == 4 and stats.preemptions > 0 and stats.interleavings > 0


TICKET = "last = atomicAdd(ticket, 1u) == gridDim.x - 1;"
FINISH = "softmax_xent_finish"
MUTANTS = {
    # the last block chosen by its index, not by the ticket: right only in grid order
    "last_by_index": replace_once(TICKET, "atomicAdd(ticket, 1u);\n"
                                  "        last = blockIdx.x == gridDim.x - 1;", FINISH),
    # the ticket taken before the part is written: right unless blocks overlap
    "ticket_before_part": lambda code: replace_once(
        "        part_loss[blockIdx.x] = ls[0];\n",
        f"        {TICKET}\n        part_loss[blockIdx.x] = ls[0];\n", FINISH)(
            replace_once(f"        {TICKET}\n", "", FINISH)(code)),
    # the counter never reset: the next call finds it past the grid
    "no_reset": replace_once("*ticket = 0u;", "", FINISH),
}


def failures(module, rows, reference, mode):
    """How many seeds give a result other than ``reference`` (or a stale ticket)."""
    bad = 0
    for seed in SEEDS:
        results, ticket, _ = finish_results(module, rows, mode, seed)
        bad += results != [reference] * 2 or ticket != 0
    return bad


@pytest.mark.parametrize("name, sequential, shuffled, concurrent", [
    ("last_by_index", False, True, True),
    ("ticket_before_part", False, False, True),
    ("no_reset", True, True, True),
])
def test_a_broken_ticket_fails_where_the_schedule_exposes_it(rows, sequential_result, name,
                                                             sequential, shuffled, concurrent):
    module = real_module(softmax_xent.SOURCE, edit=MUTANTS[name])
    for mode, caught in (("sequential", sequential), ("shuffled", shuffled),
                         ("concurrent", concurrent)):
        bad = failures(module, rows, sequential_result, mode)
        assert (bad > 0) == caught, f"{name} in {mode} mode: {bad} of {len(SEEDS)} seeds failed"


@pytest.mark.parametrize("edit", [
    replace_once("__threadfence();", "", FINISH),
    replace_once("((volatile double*)part_loss)", "(part_loss)", FINISH),
], ids=["no_threadfence", "no_volatile"])
def test_memory_ordering_mutants_pass_here_they_need_a_gpu(rows, sequential_result, edit):
    """Recorded limitation: these mutants are wrong on a GPU, invisible to the emulator."""
    module = real_module(softmax_xent.SOURCE, edit=edit)
    assert failures(module, rows, sequential_result, "concurrent") == 0
