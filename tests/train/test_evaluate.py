"""Whole-file evaluation and the export bundle of a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lmfs.cli import main
from lmfs.train import apply_overrides, load_model, train
from lmfs.train.evaluate import evaluate_tokens
from tests.train.helpers import tiny_config


def test_evaluate_tokens_matches_a_window_by_window_reference(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, max_steps=3, warmup_iters=1)
    train(cfg, progress=False)
    model, _ = load_model(cfg.out_dir)
    data = np.load(cfg.val_data)[:400]  # 399 targets -> 24 windows of 16, the tail of 15 dropped
    got = evaluate_tokens(model, data, 16, batch_size=5)
    losses = []
    with torch.no_grad():
        for s in range(0, 24 * 16, 16):
            w = torch.from_numpy(data[s : s + 17].astype(np.int64))
            losses.append(torch.nn.functional.cross_entropy(model(w[None, :-1])[0], w[1:], reduction="none"))
    ref = torch.cat(losses)
    assert got["tokens"] == 24 * 16
    assert got["loss"] == pytest.approx(float(ref.mean()), rel=1e-5)
    assert got["ppl"] == pytest.approx(float(ref.mean().exp()), rel=1e-5)


def test_evaluate_cli_exports_the_bundle(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    formats = pytest.importorskip("lmfs.tokenizer.formats")
    tok_dir = tmp_path / "tok"
    formats.save_tokenizer(tok_dir, {i: bytes([i]) for i in range(256)}, [], special_tokens=["<|endoftext|>"])
    cfg = apply_overrides(
        tiny_config(tmp_path, max_steps=3, warmup_iters=1), [f"tokenizer={tok_dir}", "model.vocab_size=257"]
    )
    train(cfg, progress=False)
    dest = tmp_path / "export"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                cfg.out_dir,
                "--export",
                str(dest),
                "--prompt",
                "ab",
                "--max-new-tokens",
                "5",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    summary = json.loads((dest / "summary.json").read_text())
    assert summary["val_loss"] == printed["val_loss"] > 0 and summary["steps"] == 3
    assert summary["val_tokens"] == (1500 - 1) // 16 * 16
    assert summary["config"]["model"]["d_model"] == 32 and summary["config"]["model"]["vocab_size"] == 257
    assert (dest / "samples.txt").read_text().startswith("=== prompt: 'ab'")
    assert len((dest / "metrics.jsonl").read_text().splitlines()) >= 3
