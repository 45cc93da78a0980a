"""Nothing lost, nothing silently wrong: verified checkpoints and fallback, disk full, a locked run folder,
finished and resumed runs that say so, clear device and schedule errors."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lmfs.train.checkpoint as ckpt_mod
import lmfs.train.loop as loop_mod
from lmfs.cli import main
from lmfs.train import read_checkpoint, train
from lmfs.train.checkpoint import (
    CheckpointError,
    checkpoint_path,
    list_checkpoints,
    save_checkpoint,
    verify_checkpoint,
)
from lmfs.train.loop import NonFiniteLossError
from lmfs.train.runlock import LOCK_NAME, RunLockedError, run_lock
from tests.train.helpers import corrupt_tensor_data, tiny_config


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(list_checkpoints(run / "checkpoints")[-1][1])["model"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """An uninterrupted 12-step run: what every interrupted, corrupted or resumed run must end equal to."""
    base = tmp_path_factory.mktemp("ref")
    cfg = tiny_config(base, out_dir=str(base / "whole"))
    train(cfg, progress=False)
    return base, _weights(Path(cfg.out_dir))


# ------------------------------------------------------------------------------------------------ verification


@pytest.mark.parametrize("n_bytes", [0, 64], ids=["1-bit", "64-bytes"])
def test_flipped_tensor_bytes_fail_verification_naming_the_file(tmp_path: Path, n_bytes: int) -> None:
    model = torch.nn.Linear(32, 32)
    path = tmp_path / "ckpt_00000004.pt"
    save_checkpoint(model, None, 4, path)
    verify_checkpoint(path)  # intact: passes
    record = corrupt_tensor_data(path, n_bytes)
    with pytest.raises(CheckpointError, match="fails verification") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and record in str(info.value)


@pytest.mark.parametrize("damage", ["1-bit", "64-bytes", "truncated", "empty"])
def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(
    tmp_path: Path, damage: str, reference, capsys: pytest.CaptureFixture
) -> None:
    cfg = tiny_config(reference[0], out_dir=str(tmp_path / "run"), keep_checkpoints=3)
    train(cfg, progress=False, stop_at=8)  # checkpoints at 4 and 8
    newest = checkpoint_path(Path(cfg.out_dir) / "checkpoints", 8)
    if damage == "1-bit":
        corrupt_tensor_data(newest, 0)
    elif damage == "64-bytes":
        corrupt_tensor_data(newest, 64)
    elif damage == "truncated":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    else:
        newest.write_bytes(b"")
    capsys.readouterr()
    result = train(cfg, progress=False)
    err = capsys.readouterr().err
    assert newest.name in err and "fails verification" in err
    assert "falling back to" in err and "ckpt_00000004.pt" in err and "resumed from step 4" in err
    assert result.steps == cfg.max_steps
    assert (newest.parent / (newest.name + ".corrupt")).exists(), "the bad file is kept aside, not reused"
    assert _same(_weights(Path(cfg.out_dir)), reference[1]), "the fallback resume must stay bit-identical"


def test_nan_stop_never_names_a_corrupted_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny_config(tmp_path, keep_checkpoints=3)
    ckpts = Path(cfg.out_dir) / "checkpoints"
    real_loss, calls = loop_mod._loss, {"n": 0}

    def loss_then_nan(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:  # step 10: ckpt 8 has gone bad on disk since it was written
            corrupt_tensor_data(checkpoint_path(ckpts, 8), 64)
            return real_loss(*args, **kwargs) * float("nan")
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(loop_mod, "_loss", loss_then_nan)
    monkeypatch.setattr(loop_mod, "evaluate", lambda *a, **k: 1.0)
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg, progress=False)
    msg = str(info.value)
    assert "ckpt_00000008.pt" not in msg and "last good" not in msg
    assert "the newest checkpoint that verifies is" in msg and "ckpt_00000004.pt" in msg


# ------------------------------------------------------------------------------------------------ disk full


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_during_save_says_so_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config(tmp_path)
    train(cfg, progress=False, stop_at=4)
    ckpts = Path(cfg.out_dir) / "checkpoints"
    before = checkpoint_path(ckpts, 4).read_bytes()
    real_open = ckpt_mod.atomic_open

    import contextlib

    @contextlib.contextmanager
    def full_disk(path, mode="wb"):  # the temp file lives on a device with no space left (a real ENOSPC)
        with real_open(path, mode) as fh, open("/dev/full", "wb") as full:
            fh.write = full.write  # type: ignore[method-assign]
            yield full

    monkeypatch.setattr(ckpt_mod, "atomic_open", full_disk)
    with pytest.raises(CheckpointError, match="disk full") as info:
        train(cfg, progress=False)
    assert "no space left" in str(info.value) and "inline_container" not in str(info.value)
    assert [it for it, _ in list_checkpoints(ckpts)] == [4]
    assert checkpoint_path(ckpts, 4).read_bytes() == before
    assert not [p for p in ckpts.iterdir() if ".tmp-" in p.name]

    monkeypatch.setattr(ckpt_mod, "atomic_open", real_open)  # space again: the run resumes from step 4
    assert train(cfg, progress=False).steps == cfg.max_steps


def test_disk_full_is_recognised_through_torch_wrapping() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904
    except RuntimeError as exc:
        assert ckpt_mod._is_disk_full(exc)
    assert not ckpt_mod._is_disk_full(RuntimeError("something else"))


# ------------------------------------------------------------------------------------------------ run-folder lock


def test_second_training_into_a_held_run_folder_refuses(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    with run_lock(cfg.out_dir):
        with pytest.raises(RunLockedError, match="in use by another training") as info:
            train(cfg, progress=False)
        assert f"pid {os.getpid()}" in str(info.value)
    assert not (Path(cfg.out_dir) / "checkpoints").exists() or not list_checkpoints(
        Path(cfg.out_dir) / "checkpoints"
    ), "the refused run wrote nothing"
    assert train(cfg, progress=False).steps == cfg.max_steps  # released: trains


def test_cli_refuses_a_held_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_config(tmp_path, max_steps=4)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg.to_dict()))
    with run_lock(cfg.out_dir):
        assert main(["train", "--config", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmfs train: error: run folder") and "in use" in err and "Traceback" not in err


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_config(tmp_path, max_steps=4)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True)
    import socket

    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "then"}))
    assert train(cfg, progress=False).steps == 4
    err = capsys.readouterr().err
    assert f"took over the lock of run folder {out} left by pid {pid}" in err and "no longer running" in err
    assert (out / LOCK_NAME).read_text() == "", "released after the run"


# ------------------------------------------------------------------------------------------------ finished / resumed


def test_rerun_of_a_finished_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tiny_config(tmp_path)
    first = train(cfg, progress=False)
    out = Path(cfg.out_dir)
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK_NAME}
    capsys.readouterr()
    again = train(cfg, progress=False)
    assert f"already complete at step {cfg.max_steps}" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK_NAME} == files
    assert again.steps == first.steps and again.final_val_loss == first.final_val_loss
    vals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in vals if r["kind"] == "val"] == [0, 4, 8, 12]


def test_resumed_run_says_from_which_step(tmp_path: Path, capsys: pytest.CaptureFixture, reference) -> None:
    cfg = tiny_config(reference[0], out_dir=str(tmp_path / "run"))
    train(cfg, progress=False, stop_at=8)
    assert "resumed" not in capsys.readouterr().err
    train(cfg, progress=False)
    assert "resumed from step 8" in capsys.readouterr().err
    assert _same(_weights(Path(cfg.out_dir)), reference[1])


# ------------------------------------------------------------------------------------------------ CLI messages


def _file(tmp_path: Path, **kw) -> Path:
    cfg = tiny_config(tmp_path, **kw)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return path


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_no_cuda_device(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _file(tmp_path, max_steps=4)
    assert main(["train", "--config", str(path), "--no-progress"]) == 0  # a checkpoint exists now
    capsys.readouterr()
    assert main(["train", "--config", str(path), "--no-progress", "--device", "cuda", "--max-steps", "8"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "cannot read checkpoint" not in err and "Traceback" not in err


def test_max_steps_shorter_than_warmup_names_the_setting(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _file(tmp_path)
    assert main(["train", "--config", str(path), "--no-progress", "--max-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "warmup_iters" in err and "--set warmup_iters=2" in err and "max_steps" in err



def test_run_killed_before_its_first_checkpoint_logs_step_0_once(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True)
    # what a run SIGKILLed after its step-0 evaluation and a few steps, before any checkpoint, leaves behind
    (out / "metrics.jsonl").write_text(
        json.dumps({"kind": "val", "step": 0, "val_loss": 3.5}) + "\n"
        + json.dumps({"kind": "train", "step": 1, "train_loss": 3.4}) + "\n"
    )
    train(cfg, progress=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "val"] == [0, 4, 8, 12]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 13))
