"""The train report section: None without data, a curve + table + samples with it."""

from __future__ import annotations

import json
from pathlib import Path

from lmfs.train.report import section


def test_no_data_gives_none(tmp_path: Path) -> None:
    assert section(tmp_path) is None
    (tmp_path / "data" / "train" / "empty").mkdir(parents=True)
    assert section(tmp_path) is None


def test_section_shows_curve_summary_and_samples(tmp_path: Path) -> None:
    run = tmp_path / "data" / "train" / "demo"
    run.mkdir(parents=True)
    records = [{"kind": "val", "step": 0, "tokens": 0, "val_loss": 9.2}]
    records += [{"kind": "train", "step": s, "tokens": s * 4096, "train_loss": 9 - s / 100} for s in range(5, 105, 5)]
    records += [{"kind": "val", "step": 100, "tokens": 409600, "val_loss": 8.1}, '{"torn']
    (run / "metrics.jsonl").write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records))
    summary = {"n_params": 1234, "n_params_non_embedding": 234, "steps": 100, "tokens_seen": 409600,
               "wall_seconds": 120.0, "final_train_loss": 8.0, "val_loss": 8.05, "val_ppl": 3100.0,
               "val_tokens": 5000, "val_file": "/x/valid.npy", "config": {"d_model": 64, "num_layers": 2}}
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "samples.txt").write_text("=== prompt: 'Hi'\nHi <there> & co")
    sec = section(tmp_path)
    assert sec is not None and sec.id == "train"
    assert "<svg" in sec.html and "demo" in sec.html
    assert "8.050 nats/token" in sec.html and "1,234" in sec.html
    assert "Hi &lt;there&gt; &amp; co" in sec.html  # samples escaped
