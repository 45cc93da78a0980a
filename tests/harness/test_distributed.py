"""run_ranks: a CPU gloo process group for distributed specs and tests."""

from __future__ import annotations

import pytest

from lmfs.harness.distributed import RankFailed


def _all_reduce(rank: int, world_size: int, scale: float) -> list[float]:
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(rank + 1) * scale])
    dist.all_reduce(t)
    return [dist.get_rank(), dist.get_world_size(), t.item()]


def _raise_on_rank_one(rank: int, world_size: int) -> int:
    if rank == 1:
        raise ValueError("rank one says no")
    return rank


def test_ranks_join_one_group(run_ranks) -> None:
    assert run_ranks(_all_reduce, 2, 2.0) == [[0, 2, 6.0], [1, 2, 6.0]]


def test_a_failing_rank_fails_the_call_with_its_traceback(run_ranks) -> None:
    with pytest.raises(RankFailed, match="rank 1 failed: ValueError: rank one says no"):
        run_ranks(_raise_on_rank_one, 2, timeout=60)
