"""Kills, corruption and concurrency in a loop: a run that is SIGKILLed (mid-save or at a random moment), whose
newest checkpoint is damaged between attempts, and which a second training tries to enter while it runs, must
end bit-identical to an uninterrupted run. A short loop runs in the default suite, a long one behind ``slow``."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from lmfs.train import read_checkpoint, train
from lmfs.train.checkpoint import SLEEP_HOOK_ENV, list_checkpoints
from tests.train.helpers import corrupt_tensor_data, tiny_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


def _launch(config: Path, hook: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(SLEEP_HOOK_ENV, None)
    if hook:
        env[SLEEP_HOOK_ENV] = hook
    return subprocess.Popen(
        [sys.executable, "-m", "lmfs", "train", "--config", str(config), "--no-progress"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 120) -> bool:
    """Poll ``cond`` until true (True), or the process ends first (False)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
    return True


def _kill(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return err


def _damage(path: Path, how: str) -> None:
    if how in ("1-bit", "64-bytes"):
        corrupt_tensor_data(path, 0 if how == "1-bit" else 64)
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    else:
        path.write_bytes(b"")


def chaos(tmp_path: Path, rounds: int, seed: int, max_steps: int = 48) -> dict[str, Any]:
    """Run the loop; returns its figures (asserting every invariant on the way). Each round moves the run on by
    one or two checkpoints before killing it."""
    rng = random.Random(seed)
    cfg = tiny_config(tmp_path, max_steps=max_steps, ckpt_interval=4, eval_interval=8, keep_checkpoints=2,
                      out_dir=str(tmp_path / "chaos"))
    config = tmp_path / "chaos.json"
    config.write_text(json.dumps(cfg.to_dict()))
    ckpts = Path(cfg.out_dir) / "checkpoints"
    figures = {"rounds": rounds, "kills": 0, "kills_mid_save": 0, "kills_random": 0, "corruptions": 0,
               "fallbacks": 0, "refused_concurrent": 0, "resumes": 0, "launches": 0}

    def newest() -> int:
        found = list_checkpoints(ckpts)
        return found[-1][0] if found else 0

    for r in range(rounds):
        at = newest()
        if at >= cfg.max_steps - cfg.ckpt_interval:
            break
        mid_save = r % 2 == 0 or rng.random() < 0.5
        if mid_save:  # stop inside the save of a later checkpoint (bytes written, not yet renamed)
            target = min(at + 4 * rng.randrange(1, 3), cfg.max_steps)
            proc = _launch(config, f"{target}:120")
            figures["launches"] += 1
            reached = _wait_for(lambda t=target: any(ckpts.glob(f".ckpt_{t:08d}.pt.tmp-*")), proc, "the save")
            assert reached, proc.communicate()[1][-2000:]
            if r % 2 == 0:  # a second training into the same folder while the first holds it
                other = _launch(config)
                figures["launches"] += 1
                _, err = other.communicate(timeout=120)
                assert other.returncode == 1 and "in use by another training" in err, err[-2000:]
                figures["refused_concurrent"] += 1
            err = _kill(proc)
            figures["kills_mid_save"] += 1
            assert newest() < target, "a checkpoint torn by the kill must not count"
        else:  # at a random moment after some progress
            target = min(at + 4 * rng.randrange(1, 3), cfg.max_steps - 4)
            proc = _launch(config)
            figures["launches"] += 1
            if not _wait_for(lambda t=target: newest() >= t, proc, "progress"):
                err = proc.communicate()[1]
                assert proc.returncode == 0, err[-2000:]
                break
            time.sleep(rng.random() * 0.05)
            if proc.poll() is not None:
                break
            err = _kill(proc)
            figures["kills_random"] += 1
        figures["kills"] += 1
        figures["resumes"] += err.count("resumed from step")
        figures["fallbacks"] += err.count("falling back to")
        if (r % 2 == 1 or rng.random() < 0.5) and list_checkpoints(ckpts):  # bit rot / torn copy of the newest checkpoint
            _damage(list_checkpoints(ckpts)[-1][1], rng.choice(["1-bit", "64-bytes", "truncated", "empty"]))
            figures["corruptions"] += 1

    proc = _launch(config)  # the last attempt runs to the end
    figures["launches"] += 1
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    figures["resumes"] += err.count("resumed from step")
    figures["fallbacks"] += err.count("falling back to") + err.count("no checkpoint in")
    metrics = [json.loads(x) for x in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["kind"] == "train"] == list(range(1, cfg.max_steps + 1))
    assert [m["step"] for m in metrics if m["kind"] == "val"] == list(range(0, cfg.max_steps + 1, 8))

    reference = train(cfg.__class__(**{**cfg.__dict__, "out_dir": str(tmp_path / "whole")}), progress=False)
    a = read_checkpoint(list_checkpoints(ckpts)[-1][1])["model"]
    b = read_checkpoint(list_checkpoints(tmp_path / "whole" / "checkpoints")[-1][1])["model"]
    figures["bit_identical"] = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    figures["same_final_loss"] = json.loads((Path(cfg.out_dir) / "summary.json").read_text())[
        "final_train_loss"] == reference.final_train_loss
    print("chaos figures:", json.dumps(figures))
    assert figures["bit_identical"] and figures["same_final_loss"]
    assert figures["corruptions"] == 0 or figures["fallbacks"] >= 1
    return figures


def test_chaos_short(tmp_path: Path) -> None:
    figures = chaos(tmp_path, rounds=2, seed=3)
    assert figures["kills"] == 2 and figures["refused_concurrent"] == 1 and figures["corruptions"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_chaos_long(tmp_path: Path, seed: int) -> None:
    figures = chaos(tmp_path, rounds=16, seed=seed, max_steps=96)
    assert figures["kills"] >= 12
