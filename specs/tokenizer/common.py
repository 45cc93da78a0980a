"""Helpers for the tokenizer specs: where the shared data is, and GPT-2's files read independently of any
implementation (the byte-to-unicode table is re-derived here from its definition)."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import pytest


def shared_data(*parts: str) -> Path:
    env = os.environ.get("LMFS_SHARED_DIR")
    here = Path(__file__).resolve()
    for base in ([Path(env)] if env else []) + [
        here.parents[2].parent / "shared",
        Path.cwd().parent / "shared",
    ]:
        if (base / "data").is_dir():
            return base.joinpath("data", *parts)
    pytest.skip("shared data folder not found (set LMFS_SHARED_DIR)")


def read_text(*parts: str) -> str:
    path = shared_data(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path.read_text(encoding="utf-8")


@cache
def gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's printable character -> byte table."""
    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    others = [b for b in range(256) if b not in printable]
    table = {chr(b): b for b in printable}
    table.update({chr(256 + n): b for n, b in enumerate(others)})
    return table


@cache
def gpt2_vocab_and_merges() -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    dec = gpt2_byte_decoder()

    def to_bytes(s: str) -> bytes:
        return bytes(dec[c] for c in s)

    encoder = json.loads(shared_data("tokenizers", "gpt2_encoder.json").read_text(encoding="utf-8"))
    vocab = {i: to_bytes(s) for s, i in encoder.items()}
    merges = []
    with open(shared_data("tokenizers", "gpt2_vocab.bpe"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line and not line.startswith("#version"):
                a, b = line.split(" ")
                merges.append((to_bytes(a), to_bytes(b)))
    return vocab, merges


def tiktoken_gpt2():
    tiktoken = pytest.importorskip("tiktoken")
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared_data("tokenizers", "tiktoken_cache")))
    return tiktoken.get_encoding("gpt2")


SHARED_TEXTS = [
    "corpus.en",
    "tinystories_sample.txt",
    "address.txt",
    "german.txt",
    "special_token_trailing_newlines.txt",
    "special_token_double_newlines_non_whitespace.txt",
]
