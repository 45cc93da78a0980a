"""Checkpoint files: atomic writes, discovery of the newest complete one, RNG state round trips."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from lmfs.train.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    capture_rng_state,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    remove_stale_temp_files,
    restore_rng_state,
    save_checkpoint,
)


def _draws(gen: torch.Generator) -> tuple:
    return (
        random.random(),
        float(np.random.rand()),
        float(torch.rand(())),
        float(torch.rand((), generator=gen)),
    )


def test_rng_states_round_trip_through_a_file(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(5)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    _draws(gen)
    model = torch.nn.Linear(3, 2)
    save_checkpoint(
        model, None, 9, tmp_path / "c.pt", generator=gen, config={"a": 1}, extra={"wall_seconds": 1.5}
    )
    expected = [_draws(gen) for _ in range(3)]
    _draws(gen)  # move every RNG on
    gen2 = torch.Generator().manual_seed(99)
    assert load_checkpoint(tmp_path / "c.pt", model, generator=gen2, restore_rng=True) == 9
    assert [_draws(gen2) for _ in range(3)] == expected
    payload = read_checkpoint(tmp_path / "c.pt")
    assert payload["config"] == {"a": 1} and payload["extra"] == {"wall_seconds": 1.5}


def test_capture_restore_in_memory() -> None:
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(()))
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(())) == a


def test_failed_save_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "x.pt"
    atomic_torch_save({"v": 1}, path)

    def boom() -> None:
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="simulated"):
        atomic_torch_save({"v": 2}, path, before_replace=boom)
    assert torch.load(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]


def test_latest_ignores_temp_files_and_prune_keeps_newest(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    assert latest_checkpoint(tmp_path) is None
    for it in (5, 40, 12):
        save_checkpoint(model, None, it, checkpoint_path(tmp_path, it))
    (tmp_path / ".ckpt_00000099.pt.tmp-123").write_bytes(b"partial")
    (tmp_path / "ckpt_notanumber.pt").write_bytes(b"x")
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 40)
    prune_checkpoints(tmp_path, keep=2)
    assert [it for it, _ in list_checkpoints(tmp_path)] == [12, 40]
    assert remove_stale_temp_files(tmp_path) == [tmp_path / ".ckpt_00000099.pt.tmp-123"]


def test_unreadable_checkpoints_raise_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"checkpoint .*junk\.pt fails verification"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an lmfs checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "none.pt")


def test_compiled_wrapper_is_unwrapped(tmp_path: Path) -> None:
    class Wrapper(torch.nn.Module):  # stands in for torch.compile's OptimizedModule
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self._orig_mod = inner

    inner = torch.nn.Linear(2, 3)
    save_checkpoint(Wrapper(inner), None, 1, tmp_path / "c.pt")
    assert set(read_checkpoint(tmp_path / "c.pt")["model"]) == {"weight", "bias"}
