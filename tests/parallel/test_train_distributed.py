"""``lmfs train`` under torchrun (2 CPU gloo ranks): the loss curve follows the one-process run, and a run
SIGKILLed in the middle of a checkpoint resumes to the same losses as an uninterrupted run on the same world
size. The default suite runs FSDP on a tiny model; ``slow`` adds DDP and ZeRO-1 and a rank that dies."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lmfs.train.checkpoint import SLEEP_HOOK_ENV, checkpoint_path
from lmfs.train.config import load_config
from lmfs.train.loop import train

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tokens")
    rng = np.random.default_rng(0)
    # a learnable stream: mostly "next = current + 1 (mod 64)", some noise
    ids = np.cumsum(rng.choice([1, 1, 1, 2, 5], size=40_000)) % 64
    np.save(folder / "train.npy", ids.astype(np.uint16))
    np.save(folder / "valid.npy", ids[:4000].astype(np.uint16))
    return folder


def _settings(tokens: Path, out: Path, **extra: object) -> list[str]:
    base = dict(train_data=tokens / "train.npy", val_data=tokens / "valid.npy", out_dir=out, max_steps=STEPS,
                batch_size=4, warmup_iters=1, lr=3e-3, min_lr=3e-4, eval_interval=2, eval_batches=2, log_interval=1,
                ckpt_interval=1, keep_checkpoints=0, tensorboard="false", threads=1, seed=0)
    model = {"model.vocab_size": 64, "model.context_length": 16, "model.d_model": 32, "model.num_layers": 2,
             "model.num_heads": 4, "model.d_ff": 64}
    return [f"{k}={v}" for k, v in {**base, **model, **extra}.items()]


def _torchrun(settings: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "lmfs", "train", "--no-progress"]
    for s in settings:
        cmd += ["--set", s]
    out_dir = next(s.partition("=")[2] for s in settings if s.startswith("out_dir="))
    full_env = {**os.environ, "LMFS_DIST_TIMEOUT": "60", "LMFS_OUT_MARK": out_dir, **(env or {})}
    return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, **kwargs)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def _losses(out_dir: Path, kind: str = "train") -> dict[int, float]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    key = "train_loss" if kind == "train" else "val_loss"
    return {r["step"]: r[key] for r in rows if r["kind"] == kind}


def _processes_of(out_dir: Path) -> dict[int, bytes]:
    """pid -> environment of every process started for ``out_dir`` (the launcher and its workers, which
    torchrun may start in sessions of their own)."""
    found = {}
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if f"LMFS_OUT_MARK={out_dir}\0".encode() in environ + b"\0":
            found[pid] = environ
    return found


def _run_killed_then_resumed(tokens: Path, out: Path, parallel: str, kill_at: int = 2) -> None:
    """Start; SIGKILL every process while rank 0 is in the middle of writing checkpoint ``kill_at``; resume."""
    proc = _torchrun(_settings(tokens, out, parallel=parallel), env={SLEEP_HOOK_ENV: f"{kill_at}:60"})
    deadline = time.monotonic() + 180
    ckpts = out / "checkpoints"
    while time.monotonic() < deadline and proc.poll() is None:
        if list(ckpts.glob(f".{checkpoint_path(ckpts, kill_at).name}.tmp-*")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before the checkpoint of step {kill_at}: {proc.communicate()[0]}"
    for pid in [proc.pid, *_processes_of(out)]:  # SIGKILL, launcher and ranks at once: nothing cleans up
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)
    while _processes_of(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not checkpoint_path(ckpts, kill_at).exists()
    assert checkpoint_path(ckpts, kill_at - 1).exists()
    _finish(_torchrun(_settings(tokens, out, parallel=parallel)))


def _check_resume(tokens: Path, tmp_path: Path, parallel: str) -> dict[int, float]:
    whole, killed = tmp_path / f"{parallel}-whole", tmp_path / f"{parallel}-killed"
    _finish(_torchrun(_settings(tokens, whole, parallel=parallel)))
    _run_killed_then_resumed(tokens, killed, parallel)
    expected, got = _losses(whole), _losses(killed)
    assert sorted(expected) == list(range(1, STEPS + 1))
    assert got == expected, f"resumed run's losses {got} differ from the uninterrupted run's {expected}"
    assert _losses(killed, "val") == _losses(whole, "val")
    return expected


def test_fsdp_two_ranks_follow_one_process_and_resume_after_sigkill(tokens, tmp_path):
    two_ranks = _check_resume(tokens, tmp_path, "fsdp")
    one = tmp_path / "one-process"
    train(load_config(None, _settings(tokens, one)), progress=False)
    single = _losses(one)
    assert sorted(single) == sorted(two_ranks)
    for step, loss in single.items():
        assert abs(two_ranks[step] - loss) < 1e-4, (step, two_ranks[step], loss)
    assert two_ranks[STEPS] < two_ranks[1]  # it learns
    ckpt = json.loads((tmp_path / "fsdp-whole" / "summary.json").read_text())
    assert ckpt["steps"] == STEPS


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "zero1"])
def test_ddp_and_zero1_resume_after_sigkill(tokens, tmp_path, parallel):
    two_ranks = _check_resume(tokens, tmp_path, parallel)
    one = tmp_path / "one-process"
    train(load_config(None, _settings(tokens, one)), progress=False)
    for step, loss in _losses(one).items():
        assert abs(two_ranks[step] - loss) < 1e-4, (step, two_ranks[step], loss)


@pytest.mark.slow
def test_a_dead_rank_ends_the_job_with_a_message(tokens, tmp_path):
    out = tmp_path / "dead"
    proc = _torchrun(_settings(tokens, out, parallel="fsdp"), env={SLEEP_HOOK_ENV: "2:60"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not checkpoint_path(out / "checkpoints", 1).exists():
        time.sleep(0.2)
    workers = [pid for pid, env in _processes_of(out).items() if b"\0RANK=1\0" in env]
    assert workers, "rank 1's process not found"
    started = time.monotonic()
    os.kill(workers[0], signal.SIGKILL)
    out_text, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert time.monotonic() - started < 90, "the job hung after a rank died"
    assert "rank" in out_text.lower() and ("failed" in out_text.lower() or "died" in out_text.lower()), out_text[-3000:]
