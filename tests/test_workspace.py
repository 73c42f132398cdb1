"""The one buffer cache: same key, same array; a bounded number of shapes per name."""
import numpy as np

from gpunet.ops import workspace
from gpunet.ops.workspace import Workspace


def test_same_key_returns_the_same_array_and_another_key_another():
    ws = Workspace(np)
    a = ws.get("out", (3, 4), np.float32)
    assert ws.get("out", [3, 4], "float32") is a
    assert ws.get("out", (3, 4), np.float64) is not a
    assert ws.get("grad", (3, 4), np.float32) is not a
    assert ws.like("out", np.empty((3, 4), np.float32)) is a


def test_each_name_keeps_only_its_most_recently_used_shapes():
    ws = Workspace(np)
    first = ws.get("out", (1,), np.float32)
    for n in range(2, workspace.SHAPES_PER_NAME + 1):
        ws.get("out", (n,), np.float32)
    assert ws.get("out", (1,), np.float32) is first  # used again: now the most recent
    ws.get("out", (99,), np.float32)                 # evicts (2,), the least recently used
    assert len(ws) == workspace.SHAPES_PER_NAME
    assert ws.get("out", (1,), np.float32) is first
    ws.get("other", (5,), np.float32)
    assert len(ws) == workspace.SHAPES_PER_NAME + 1


def test_zeros_are_zero_when_created_and_kept_as_left():
    ws = Workspace(np)
    ticket = ws.zeros("ticket", (2,), np.uint32)
    assert (ticket == 0).all()
    ticket[:] = 7
    assert ws.zeros("ticket", (2,), np.uint32) is ticket and (ticket == 7).all()
    ws.clear()
    assert len(ws) == 0 and ws.zeros("ticket", (2,), np.uint32) is not ticket
