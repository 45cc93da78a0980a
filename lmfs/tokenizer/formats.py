"""Tokenizer files: lmfs's own (``vocab.json`` + ``merges.txt`` + ``tokenizer.json``), OpenAI's GPT-2 files
(``encoder.json`` + ``vocab.bpe``) and tiktoken rank files (``*.tiktoken``).

lmfs's vocab and merges use the GPT-2 byte-to-unicode convention: every byte maps to a printable character, so a
token's bytes are written as a plain string (``Ġthe`` is `` the``). ``vocab.json`` maps that string to the id;
``merges.txt`` has a ``#version`` line and then one merge per line, the two tokens separated by one space.
Errors on malformed files name the file and the line: not UTF-8, ids or ranks beyond what the file's size
allows (below its number of entries + :data:`~lmfs.tokenizer.tokenizer.ID_SLACK`, so a stray ``10**12`` is an
error, not a terabyte table), tokens longer than :data:`~lmfs.tokenizer.pretokenize.MAX_TOKEN_BYTES`, a
``tokenizer.json`` pattern that does not cover text or special tokens that are not a list of strings.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from lmfs.atomic import write_text_atomic
from lmfs.tokenizer.pretokenize import (
    CL100K_PATTERN,
    GPT2_PATTERN,
    MAX_TOKEN_BYTES,
    check_pattern_covers,
    check_special_list,
)
from lmfs.tokenizer.tokenizer import ID_SLACK, Tokenizer

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]


class TokenizerFileError(ValueError):
    """A tokenizer file is malformed; the message names the file and line."""

    def __init__(self, path: str | os.PathLike, line: int | None, what: str) -> None:
        where = f"{os.fspath(path)}:{line}" if line is not None else os.fspath(path)
        super().__init__(f"{where}: {what}")


def _not_utf8(path: str | os.PathLike, exc: UnicodeDecodeError, line: int | None = None) -> TokenizerFileError:
    return TokenizerFileError(
        path, line, f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
        f"{' of the line' if line is not None else ''}); tokenizer files are UTF-8"
    )


def _check_id(path: str | os.PathLike, line: int | None, what: str, i: int, entries: int) -> None:
    if i >= entries + ID_SLACK:
        raise TokenizerFileError(
            path, line, f"{what} {i} is too large for a file of {entries} entries (ids and ranks must stay below "
            f"the number of entries + {ID_SLACK})"
        )


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character table.

    Printable Latin-1 bytes (``!``-``~``, ``¡``-``¬``, ``®``-``ÿ``) stand for themselves; the other 68 bytes
    (controls, space, ...) take the characters from U+0100 upwards, in byte order.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@cache
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def token_to_str(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def str_to_token(text: str, path: str | os.PathLike = "<string>", line: int | None = None) -> bytes:
    table = unicode_to_bytes()
    try:
        return bytes(table[c] for c in text)
    except KeyError as exc:
        raise TokenizerFileError(
            path, line, f"character {exc.args[0]!r} in {text!r} is not in GPT-2's byte-to-unicode alphabet"
        ) from None


# ----------------------------------------------------------------------------------------------- lmfs format


def save_tokenizer(
    out_dir: str | os.PathLike,
    vocab: Vocab,
    merges: Merges,
    special_tokens: Sequence[str] = (),
    pattern: str = GPT2_PATTERN,
    meta: dict | None = None,
) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and ``tokenizer.json`` (special tokens, regex, metadata) to ``out_dir``."""
    out = Path(out_dir)
    vocab_json = {token_to_str(b): i for i, b in sorted(vocab.items())}
    if len(vocab_json) != len(vocab):
        raise ValueError("vocab has duplicate tokens; cannot save it")
    lines = ["#version: 0.2"] + [f"{token_to_str(a)} {token_to_str(b)}" for a, b in merges]
    write_text_atomic(out / "vocab.json", json.dumps(vocab_json, ensure_ascii=False, indent=0) + "\n")
    write_text_atomic(out / "merges.txt", "\n".join(lines) + "\n")
    info = {
        "format": "lmfs-bpe/1",
        "special_tokens": list(special_tokens),
        "pattern": pattern,
        **(meta or {}),
    }
    write_text_atomic(out / "tokenizer.json", json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    return out


def load_vocab(path: str | os.PathLike) -> Vocab:
    """A GPT-2-convention ``vocab.json``/``encoder.json`` (token string → id) as id → bytes."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    except json.JSONDecodeError as exc:
        raise TokenizerFileError(
            path, exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    if not isinstance(raw, dict):
        raise TokenizerFileError(path, None, "expected a JSON object mapping token strings to integer ids")
    vocab: Vocab = {}
    for text, i in raw.items():
        if not isinstance(i, int) or isinstance(i, bool) or i < 0:
            raise TokenizerFileError(
                path, None, f"token {text[:40]!r} has id {i!r}; ids must be non-negative integers"
            )
        _check_id(path, None, f"token {text[:40]!r} has id", i, len(raw))
        if i in vocab:
            raise TokenizerFileError(path, None, f"id {i} is used twice ({vocab[i]!r} and {text!r})")
        if len(text) > MAX_TOKEN_BYTES:
            raise TokenizerFileError(
                path, None, f"token {text[:40]!r}... (id {i}) is longer than {MAX_TOKEN_BYTES} bytes"
            )
        vocab[i] = str_to_token(text, path)
    return vocab


def load_merges(path: str | os.PathLike) -> Merges:
    """A GPT-2-convention merges file: an optional ``#version`` header, then ``left right`` per line."""
    merges: Merges = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise _not_utf8(path, exc, lineno) from None
            if not line or (lineno == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise TokenizerFileError(
                    path, lineno, f"expected two tokens separated by one space, got {line!r}"
                )
            merges.append((str_to_token(parts[0], path, lineno), str_to_token(parts[1], path, lineno)))
    return merges


def load_tokenizer(tok_dir: str | os.PathLike, special_tokens: Sequence[str] | None = None) -> Tokenizer:
    """A tokenizer saved by :func:`save_tokenizer` (special tokens and regex from ``tokenizer.json``)."""
    d = Path(tok_dir)
    for name in ("vocab.json", "merges.txt"):
        if not (d / name).is_file():
            raise FileNotFoundError(
                f"{d / name} not found: pass the folder written by `lmfs tokenizer train`"
            )
    info: dict = {}
    if (d / "tokenizer.json").is_file():
        try:
            info = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise _not_utf8(d / "tokenizer.json", exc) from None
        except json.JSONDecodeError as exc:
            raise TokenizerFileError(d / "tokenizer.json", exc.lineno, f"not valid JSON: {exc.msg}") from None
        if not isinstance(info, dict):
            raise TokenizerFileError(d / "tokenizer.json", None, "expected a JSON object")
    if special_tokens is not None:
        specials = check_special_list(special_tokens)
    else:
        try:
            specials = check_special_list(info.get("special_tokens", []))
        except TypeError as exc:
            raise TokenizerFileError(d / "tokenizer.json", None, str(exc)) from None
    pattern = info.get("pattern", GPT2_PATTERN)
    try:
        if not isinstance(pattern, str):
            raise ValueError(f"'pattern' must be a string (got {pattern!r})")
        check_pattern_covers(pattern)
    except ValueError as exc:
        raise TokenizerFileError(d / "tokenizer.json", None, str(exc)) from None
    return Tokenizer(load_vocab(d / "vocab.json"), load_merges(d / "merges.txt"), specials, pattern)


def load_gpt2(
    encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike, special_tokens: Sequence[str] | None = None
) -> Tokenizer:
    """OpenAI's GPT-2 tokenizer from ``encoder.json`` + ``vocab.bpe`` (``<|endoftext|>`` is id 50256)."""
    specials = ["<|endoftext|>"] if special_tokens is None else check_special_list(special_tokens)
    return Tokenizer(load_vocab(encoder_json), load_merges(vocab_bpe), specials, GPT2_PATTERN)


# ----------------------------------------------------------------------------------------------- tiktoken

#: tiktoken encodings lmfs knows: regex and special tokens (ids as in tiktoken)
TIKTOKEN_ENCODINGS: dict[str, tuple[str, dict[str, int]]] = {
    "gpt2": (GPT2_PATTERN, {"<|endoftext|>": 50256}),
    "r50k_base": (GPT2_PATTERN, {"<|endoftext|>": 50256}),
    "cl100k_base": (
        CL100K_PATTERN,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}


def load_tiktoken_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """A ``*.tiktoken`` file: one ``base64(token) rank`` per line."""
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        entries = sum(1 for line in f if line.strip())
        f.seek(0)
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise TokenizerFileError(path, lineno, f"expected 'base64-token rank', got {line[:80]!r}")
            try:
                token = base64.b64decode(parts[0], validate=True)
                rank = int(parts[1])
            except ValueError as exc:
                raise TokenizerFileError(path, lineno, f"bad token or rank ({exc})") from None
            if rank < 0:
                raise TokenizerFileError(path, lineno, f"rank {rank} is negative")
            _check_id(path, lineno, "rank", rank, entries)
            if token in ranks:
                raise TokenizerFileError(path, lineno, f"token {token!r} appears twice")
            ranks[token] = rank
    return ranks


def merges_from_ranks(ranks: dict[bytes, int], path: str | os.PathLike = "<ranks>") -> Merges:
    """Recover the merge list from token ranks: each multi-byte token is made by the merge of the two parts
    that BPE (with the tokens of lower rank) would produce last, listed in rank order."""
    merges: Merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = _bpe_parts(token, ranks, rank)
        if len(parts) != 2:
            raise TokenizerFileError(
                path, None, f"token {token!r} (rank {rank}) cannot be built from lower ranks"
            )
        merges.append((parts[0], parts[1]))
    return merges


def _bpe_parts(token: bytes, ranks: dict[bytes, int], max_rank: int) -> list[bytes]:
    parts = [bytes([b]) for b in token]
    while True:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            return parts
        i = best[1]
        parts = [*parts[:i], parts[i] + parts[i + 1], *parts[i + 2 :]]


def load_tiktoken(
    path: str | os.PathLike, encoding: str = "gpt2", special_tokens: dict[str, int] | None = None
) -> Tokenizer:
    """A tokenizer from a tiktoken rank file; ``encoding`` picks the regex and special tokens
    (``gpt2``/``r50k_base``: GPT-2's regex; ``cl100k_base``: its own regex)."""
    if encoding not in TIKTOKEN_ENCODINGS:
        raise ValueError(
            f"unknown tiktoken encoding {encoding!r}; choose one of {sorted(TIKTOKEN_ENCODINGS)}"
        )
    pattern, default_specials = TIKTOKEN_ENCODINGS[encoding]
    specials = default_specials if special_tokens is None else special_tokens
    if not isinstance(specials, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in specials.items()
    ):
        raise TypeError(f"special_tokens must be a dict of str -> int id, got {special_tokens!r}")
    ranks = load_tiktoken_ranks(path)
    vocab: Vocab = {rank: token for token, rank in ranks.items()}
    for s, i in specials.items():
        if i in vocab:
            raise TokenizerFileError(path, None, f"special token {s!r} id {i} collides with a regular token")
        vocab[i] = s.encode("utf-8")
    tok = Tokenizer(vocab, merges_from_ranks(ranks, path), list(specials), pattern)
    # tiktoken merges any adjacent pair whose concatenation is a token, at that token's rank
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = ranks.get(token[:i]), ranks.get(token[i:])
            if left is not None and right is not None:
                tok.ranks.setdefault((left, right), (rank, rank))
    return tok
