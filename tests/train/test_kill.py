"""SIGKILL in the middle of a checkpoint save: the restart resumes from the last complete checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lmfs.train import read_checkpoint, read_metrics, train
from lmfs.train.checkpoint import SLEEP_HOOK_ENV, latest_checkpoint, list_checkpoints
from tests.train.helpers import tiny_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_during_save_then_resume(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, out_dir=str(tmp_path / "killed"))
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps(cfg.to_dict()))
    ckpts = Path(cfg.out_dir) / "checkpoints"

    env = {**os.environ, SLEEP_HOOK_ENV: "8:120", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmfs", "train", "--config", str(config_file), "--no-progress"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(ckpts.glob(".ckpt_00000008.pt.tmp-*")):  # step 8's bytes are written, not yet renamed
            if proc.poll() is not None:
                pytest.fail(
                    f"training exited early ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail("the save of step 8 never started")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert [it for it, _ in list_checkpoints(ckpts)] == [4], "only the complete checkpoint may count"
    assert latest_checkpoint(ckpts).name == "ckpt_00000004.pt"

    result = train(cfg, progress=False)  # restart: resumes from step 4
    assert result.steps == cfg.max_steps
    assert not list(ckpts.glob(".ckpt_*")), "the torn temp file should be cleaned up"
    steps = [r["step"] for r in read_metrics(Path(cfg.out_dir) / "metrics.jsonl") if r["kind"] == "train"]
    assert steps == list(range(1, cfg.max_steps + 1))

    reference = train(dataclasses.replace(cfg, out_dir=str(tmp_path / "whole")), progress=False)
    assert result.final_train_loss == reference.final_train_loss
    a = read_checkpoint(latest_checkpoint(ckpts))["model"]
    b = read_checkpoint(latest_checkpoint(tmp_path / "whole" / "checkpoints"))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
