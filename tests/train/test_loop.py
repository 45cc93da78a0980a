"""The training loop end to end on a tiny model: learning, logs, bit-identical resume, NaN stop, errors."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import lmfs.train.loop as loop
from lmfs.train import ConfigError, NonFiniteLossError, read_checkpoint, read_metrics, train
from lmfs.train.checkpoint import latest_checkpoint, list_checkpoints
from tests.train.helpers import tiny_config


def _train_losses(out_dir: Path) -> list[tuple[int, float]]:
    return [
        (r["step"], r["train_loss"]) for r in read_metrics(out_dir / "metrics.jsonl") if r["kind"] == "train"
    ]


def _final_weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(latest_checkpoint(out_dir / "checkpoints"))["model"]


def test_tiny_run_learns_and_writes_its_files(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, max_steps=30, eval_interval=10)
    result = train(cfg, progress=False)
    out = Path(cfg.out_dir)
    records = read_metrics(out / "metrics.jsonl")
    vals = [r["val_loss"] for r in records if r["kind"] == "val"]
    assert [r["step"] for r in records if r["kind"] == "val"] == [0, 10, 20, 30]
    assert vals[0] > math.log(32) - 0.5  # starts near uniform over the 32-token vocab
    assert vals[-1] < vals[0] - 1.0, f"validation loss did not fall: {vals}"
    assert result.steps == 30 and result.tokens_seen == 30 * 8 * 16
    assert result.final_val_loss == pytest.approx(vals[-1])
    assert result.final_train_loss == _train_losses(out)[-1][1]
    assert [it for it, _ in list_checkpoints(out / "checkpoints")] == [28, 30]  # keep_checkpoints=2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["n_params"] == result.n_params > 0
    assert json.loads((out / "config.json").read_text())["model"]["d_model"] == 32


@pytest.mark.parametrize("accum", [1, 2])
def test_resume_is_bit_identical(tmp_path: Path, accum: int) -> None:
    whole = tiny_config(tmp_path, out_dir=str(tmp_path / "whole"), grad_accum_steps=accum)
    train(whole, progress=False)
    split = dataclasses.replace(whole, out_dir=str(tmp_path / "split"))
    first = train(split, progress=False, stop_at=6)  # "interrupted" after step 6 (a checkpoint is written)
    assert first.steps == 6
    torch.manual_seed(1234)  # disturb the global RNGs: resume must restore them
    np.random.seed(4321)
    second = train(split, progress=False)
    assert second.steps == whole.max_steps
    assert _train_losses(tmp_path / "split") == _train_losses(tmp_path / "whole")
    a, b = _final_weights(tmp_path / "whole"), _final_weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    va = [r["val_loss"] for r in read_metrics(tmp_path / "whole" / "metrics.jsonl") if r["kind"] == "val"]
    vb = [r["val_loss"] for r in read_metrics(tmp_path / "split" / "metrics.jsonl") if r["kind"] == "val"]
    assert va == vb


def test_resume_drops_records_logged_after_the_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    train(cfg, progress=False, stop_at=4)
    with open(Path(cfg.out_dir) / "metrics.jsonl", "a") as fh:  # as if the process died at step 6
        fh.write(json.dumps({"kind": "train", "step": 6, "train_loss": 0.0}) + "\n")
        fh.write('{"kind": "train", "st')  # torn last line
    train(cfg, progress=False)
    steps = [s for s, _ in _train_losses(Path(cfg.out_dir))]
    assert steps == list(range(1, 13))


def test_finished_run_is_not_trained_again(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, max_steps=4)
    first = train(cfg, progress=False)
    again = train(cfg, progress=False)
    assert again.steps == 4 and again.final_train_loss == first.final_train_loss
    assert torch.equal(
        _final_weights(Path(cfg.out_dir))["lm_head.weight"],
        read_checkpoint(latest_checkpoint(Path(cfg.out_dir) / "checkpoints"))["model"]["lm_head.weight"],
    )


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real_loss = loop._loss

    def flaky_loss(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 6 else loss  # training step 6 (no evals: eval_interval=0)

    monkeypatch.setattr(loop, "_loss", flaky_loss)
    cfg = tiny_config(tmp_path, eval_interval=0, val_data="")
    with pytest.raises(
        NonFiniteLossError, match=r"stopped at step 6: loss nan.*newest checkpoint that verifies is .*ckpt_00000004.pt"
    ):
        train(cfg, progress=False)
    ckpts = list_checkpoints(Path(cfg.out_dir) / "checkpoints")
    assert [it for it, _ in ckpts] == [4]
    weights = read_checkpoint(ckpts[-1][1])["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert read_metrics(Path(cfg.out_dir) / "metrics.jsonl")[-1]["kind"] == "error"


def test_resume_with_a_different_model_is_refused(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, max_steps=4)
    train(cfg, progress=False)
    with pytest.raises(ConfigError, match=r"d_model: checkpoint 32 vs config 64"):
        train(
            dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, d_model=64), max_steps=8),
            progress=False,
        )


def test_token_file_shorter_than_context(tmp_path: Path) -> None:
    np.save(tmp_path / "short.npy", np.arange(10, dtype=np.uint16))
    cfg = tiny_config(tmp_path, val_data=str(tmp_path / "short.npy"))
    with pytest.raises(
        ConfigError, match=r"val_data .*short.npy has 10 tokens, fewer than context_length \+ 1 = 17"
    ):
        train(cfg, progress=False)


def test_missing_token_file(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, train_data=str(tmp_path / "nope.npy"))
    with pytest.raises(FileNotFoundError, match=r"nope\.npy"):
        train(cfg, progress=False)


def test_bf16_autocast_run(tmp_path: Path) -> None:
    result = train(tiny_config(tmp_path, max_steps=4, autocast_bf16=True), progress=False)
    assert math.isfinite(result.final_train_loss) and math.isfinite(result.final_val_loss)


def test_tensorboard_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    cfg = tiny_config(tmp_path, max_steps=2, warmup_iters=1, tensorboard=True)
    train(cfg, progress=False)
    assert list((Path(cfg.out_dir) / "tb").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_compiled_run_matches_eager(tmp_path: Path) -> None:
    eager = train(tiny_config(tmp_path, out_dir=str(tmp_path / "e"), max_steps=4), progress=False)
    compiled = train(
        tiny_config(tmp_path, out_dir=str(tmp_path / "c"), max_steps=4, compile=True), progress=False
    )
    assert compiled.final_train_loss == pytest.approx(eager.final_train_loss, rel=1e-3)


def test_time_limit_stops_with_checkpoint_and_eval_then_resumes(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, max_wall_seconds=1e-9)
    stopped = train(cfg, progress=False)
    assert stopped.steps == 0 and stopped.final_val_loss is not None
    assert list_checkpoints(Path(cfg.out_dir) / "checkpoints") == []  # nothing to save at step 0
    done = train(dataclasses.replace(cfg, max_wall_seconds=0.0), progress=False)
    assert done.steps == cfg.max_steps
