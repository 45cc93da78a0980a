"""`lmfs generate` on a tiny trained run with a byte-level tokenizer saved by lmfs.tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmfs.cli import main
from lmfs.train import train
from tests.train.helpers import tiny_config

formats = pytest.importorskip("lmfs.tokenizer.formats")


def test_generate_streams_a_continuation(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tok_dir = tmp_path / "tok"
    vocab = {i: bytes([i]) for i in range(256)}
    formats.save_tokenizer(tok_dir, vocab, [], special_tokens=["<|endoftext|>"])  # id 256
    text = ("the cat sat on the mat. " * 200).encode()
    np.save(tmp_path / "train.npy", np.frombuffer(text, dtype=np.uint8).astype(np.uint16))
    np.save(tmp_path / "valid.npy", np.frombuffer(text[:2000], dtype=np.uint8).astype(np.uint16))
    cfg = tiny_config(
        tmp_path, max_steps=40, eval_interval=0, vocab_size=257, tokenizer=str(tok_dir), lr=2e-2
    )
    train(cfg, progress=False)
    args = ["generate", "--checkpoint", cfg.out_dir, "--prompt", "the cat", "--max-new-tokens", "24"]
    args += ["--temperature", "0", "--seed", "0"]
    rc = main(args)
    out = capsys.readouterr().out
    assert rc == 0
    # greedy and within the 16-token context (7 prompt + 9 new): the KV cache changes nothing
    short = [*args[:-5], "9", *args[-4:]]
    outs = [(main(short + extra), capsys.readouterr().out) for extra in ([], ["--no-kv-cache"])]
    assert outs[0] == outs[1] and outs[0][0] == 0
    # speculative decoding with the run itself as the draft: the same greedy text, every draft accepted
    assert main([*short, "--draft", cfg.out_dir, "--draft-k", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out == outs[0][1] and "speculative: 100% of" in captured.err
    assert out.startswith("the cat")
    assert len(out.strip()) > len("the cat") + 5
    # a well-trained byte model continues the pattern
    assert "sat" in out or "mat" in out or " the " in out


def test_generate_without_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["generate", "--checkpoint", str(tmp_path), "--prompt", "x"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
