"""`lmfs generate` on the engine, `lmfs bench decode`, and `lmfs serve`'s argument errors, on a tiny trained run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmfs.cli import main
from lmfs.train import train
from tests.train.helpers import tiny_config

formats = pytest.importorskip("lmfs.tokenizer.formats")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("run")
    tok_dir = tmp / "tok"
    formats.save_tokenizer(tok_dir, {i: bytes([i]) for i in range(256)}, [], special_tokens=["<|endoftext|>"])
    text = ("the cat sat on the mat. " * 200).encode()
    np.save(tmp / "train.npy", np.frombuffer(text, dtype=np.uint8).astype(np.uint16))
    np.save(tmp / "valid.npy", np.frombuffer(text[:2000], dtype=np.uint8).astype(np.uint16))
    cfg = tiny_config(tmp, max_steps=30, eval_interval=0, vocab_size=257, tokenizer=str(tok_dir), lr=2e-2)
    train(cfg, progress=False)
    return str(cfg.out_dir)


def test_generate_on_the_engine_matches_the_reference(run_dir, capsys):
    base = [
        "generate",
        "--checkpoint",
        run_dir,
        "--prompt",
        "the cat",
        "--max-new-tokens",
        "8",
        "--temperature",
        "0",
    ]
    assert main(base) == 0
    engine_out = capsys.readouterr().out
    assert main([*base, "--no-kv-cache"]) == 0  # the reference decoder
    assert capsys.readouterr().out == engine_out
    assert main([*base, "--speculate", "ngram", "--draft-k", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out == engine_out and "speculative:" in captured.err


def test_generate_batches_samples(run_dir, capsys):
    args = [
        "generate",
        "--checkpoint",
        run_dir,
        "--prompt",
        "the",
        "--max-new-tokens",
        "6",
        "--num-samples",
        "3",
        "--temperature",
        "1.0",
        "--seed",
        "5",
    ]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.count("--- sample") == 3
    assert main(args) == 0
    assert capsys.readouterr().out == first  # seeded


def test_generate_on_a_missing_cuda_device_says_so(run_dir, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["generate", "--checkpoint", run_dir, "--prompt", "x", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "cannot read checkpoint" not in err


def test_bench_decode(run_dir, tmp_path: Path, capsys):
    out = tmp_path / "decode.json"
    args = [
        "bench",
        "decode",
        "--checkpoint",
        run_dir,
        "--batch",
        "1",
        "2",
        "--prompt-tokens",
        "4",
        "--new-tokens",
        "4",
        "--rounds",
        "1",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "tok/s" in printed
    doc = json.loads(out.read_text())
    assert [r["batch"] for r in doc["rows"]] == [1, 2] and all(r["tokens_per_s"] > 0 for r in doc["rows"])
    assert main([*args[:-2], "--new-tokens", "100000"]) == 2
    assert "exceeds the context" in capsys.readouterr().err


def test_serve_argument_errors(run_dir, capsys):
    pytest.importorskip("uvicorn")
    assert main(["serve", "--checkpoint", run_dir, "--max-batch", "0"]) == 2
    assert "--max-batch must be >= 1" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", run_dir + "-missing"]) == 1
    assert "error" in capsys.readouterr().err
