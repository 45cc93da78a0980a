"""Pre-tokenization: the regexes that cut text into pre-tokens, splitting on special tokens, and safe places to
cut a big file into chunks that can be pre-tokenized independently.

A *pre-token* is a piece of text that BPE never merges across. The GPT-2 regex has no look-behind, so the
pre-tokens of ``text[p:]`` equal those of ``text`` after ``p`` whenever ``p`` is a pre-token boundary; the chunker
below only cuts at positions that are guaranteed boundaries, so chunked and whole-file pre-tokenization agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import regex

#: The GPT-2 pre-tokenizer (also tiktoken's ``gpt2`` / ``r50k_base``).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

#: tiktoken's ``cl100k_base`` pre-tokenizer: case-insensitive contractions, numbers in groups of at most three,
#: newlines attached to punctuation, possessive quantifiers.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)

_COMPILED: dict[str, regex.Pattern] = {}

# A coarser split for GPT-2's regex: a non-space run with its optional leading space, or a whitespace run cut the
# way GPT-2 cuts it. Every coarse boundary is a GPT-2 pre-token boundary and cutting there changes no pre-token
# (non-space pre-tokens never hold a space after their first character; a whitespace pre-token equals its coarse
# piece), so the pre-tokens of the coarse pieces, concatenated, are the text's pre-tokens. It runs in the faster
# `re` engine, whose \s also matches U+001C-U+001F (not whitespace for `regex`): the classes below exclude them.
_WS, _NON_WS = r"[^\S\x1c-\x1f]", r"[\S\x1c-\x1f]"
GPT2_COARSE_PATTERN = rf" ?{_NON_WS}+|{_WS}+(?!{_NON_WS})|{_WS}+"


def coarse_pattern(pattern: str) -> re.Pattern | None:
    """The coarse splitter for ``pattern`` (only GPT-2's has one), else None."""
    return re.compile(GPT2_COARSE_PATTERN) if pattern == GPT2_PATTERN else None


def compile_pattern(pattern: str) -> regex.Pattern:
    """The compiled pre-tokenizer regex (cached)."""
    pat = _COMPILED.get(pattern)
    if pat is None:
        pat = _COMPILED[pattern] = regex.compile(pattern)
    return pat


#: The longest pre-token BPE training sees, in bytes: longer ones are cut into pieces of at most this many bytes
#: (at UTF-8 character boundaries) before the merge loop, so no token grows longer and the merge loop's memory
#: stays proportional to the input (one 200 MB pre-token ``'a' * 200_000_000`` becomes 781,250 counts of one
#: 256-byte piece, not a 200M-element list).
MAX_PRETOKEN_BYTES = 256

#: The longest token a vocab file may hold, in bytes (real vocabs stay far below: GPT-2's and cl100k's longest
#: tokens are 128 bytes).
MAX_TOKEN_BYTES = 1024

#: Probe text for :func:`check_pattern_covers`: letters (both cases, accented, CJK), digits, punctuation,
#: spaces, tabs, newlines, an apostrophe contraction.
_PROBE = "Hello World 2024! It's ¿Qué tal?\n\tnaïve 你好 — x=1;  \r\n  end.\n"


def check_special_list(special_tokens: object, what: str = "special_tokens") -> list[str]:
    """``special_tokens`` as a list of non-empty strings; TypeError for a bare ``str`` (which would otherwise
    become one special token per character) or non-strings."""
    if special_tokens is None:
        return []
    if isinstance(special_tokens, str | bytes):
        raise TypeError(
            f"{what} must be a list of strings, not a {type(special_tokens).__name__} "
            f"({special_tokens!r}); write [{special_tokens!r}]"
        )
    items = list(special_tokens)  # type: ignore[call-overload]
    bad = next((s for s in items if not isinstance(s, str)), None)
    if bad is not None:
        raise TypeError(f"{what} must hold strings, got {type(bad).__name__} {bad!r}")
    return items


def uncovered(pattern: regex.Pattern, text: str) -> int | None:
    """The first position of ``text`` no match of ``pattern`` covers (matches must tile it), or None."""
    pos = 0
    for m in pattern.finditer(text):
        if m.start() != pos:
            return pos
        pos = m.end()
    return None if pos == len(text) else pos


def check_pattern_covers(pattern: str, text: str | None = None) -> None:
    """ValueError when the pre-tokenizer ``pattern`` does not cover every character of ``text`` (default: a
    probe with letters, digits, punctuation and whitespace): BPE must be lossless, and text the pattern skips
    would be dropped silently."""
    text = _PROBE if text is None else text
    at = uncovered(compile_pattern(pattern), text)
    if at is not None:
        raise ValueError(
            f"the pre-tokenizer pattern {pattern!r} does not cover the text: {text[at:at + 20]!r} at "
            f"position {at} matches nothing and would be dropped; use a pattern whose alternatives match every "
            "character (e.g. end with |\\s+|.)"
        )


def cap_pretokens(counts, max_bytes: int = MAX_PRETOKEN_BYTES):
    """``counts`` (pre-token str or UTF-8 bytes → count) with every pre-token longer than ``max_bytes`` cut into
    consecutive pieces of at most ``max_bytes`` bytes (at UTF-8 character boundaries), counts summed. Returns
    the input itself when nothing is that long. Keys come back as bytes where a pre-token was cut."""
    if max_bytes < 4:
        raise ValueError(f"max_pretoken_bytes must be >= 4 (one UTF-8 character), got {max_bytes}")
    long = [k for k in counts if len(k) > max_bytes // 4 and len(k.encode("utf-8") if isinstance(k, str) else k) > max_bytes]
    if not long:
        return counts
    out: dict = {}
    for k, f in counts.items():
        b = k.encode("utf-8") if isinstance(k, str) else k
        if len(b) <= max_bytes:
            out[b] = out.get(b, 0) + f
            continue
        start = 0
        while start < len(b):
            end = min(start + max_bytes, len(b))
            while end < len(b) and end > start + 1 and (b[end] & 0xC0) == 0x80:  # not inside a character
                end -= 1
            piece = b[start:end]
            out[piece] = out.get(piece, 0) + f
            start = end
    return out


def special_regex(special_tokens: Sequence[str]) -> regex.Pattern | None:
    """A regex matching any special token, longest first (so ``<|eot|><|eot|>`` beats ``<|eot|>``).

    The match at the leftmost position wins; among specials starting there the longest wins.
    None when there are no special tokens.
    """
    specials = sorted(set(special_tokens), key=lambda s: (-len(s), s))
    if not specials:
        return None
    if any(s == "" for s in specials):
        raise ValueError("special tokens must be non-empty strings (got '')")
    return regex.compile("|".join(regex.escape(s) for s in specials))


def split_on_specials(text: str, specials: regex.Pattern | None) -> Iterator[tuple[str, bool]]:
    """Yield ``(piece, is_special)`` in order; text pieces may be empty strings and are skipped."""
    if specials is None:
        if text:
            yield text, False
        return
    pos = 0
    for m in specials.finditer(text):
        if m.start() > pos:
            yield text[pos : m.start()], False
        yield m.group(), True
        pos = m.end()
    if pos < len(text):
        yield text[pos:], False


# ----------------------------------------------------------------------------------------------- chunking

# Byte positions where cutting changes no pre-token, neither after the cut nor at the end of the text before it
# (for GPT-2's and cl100k's regexes), found in raw bytes:
#  * between "<printable>\n" and a printable ASCII character: a pre-token holding a newline is all whitespace and
#    cannot run into the non-space after it, and a lone "\n" after a non-space is its own pre-token whether or not
#    text follows (unlike "\n\n", which splits as "\n" + "\n" before text but stays one pre-token at the end);
#  * between two ASCII letters and " <ASCII letter>": a letter run stops at the space; the next pre-token is
#    " word". This one keeps a 100 MB file with no newline splittable.
_SAFE_CUTS = (regex.compile(rb"[\x21-\x7e]\n(?=[\x21-\x7e])"), regex.compile(rb"[A-Za-z]{2}(?= [A-Za-z])"))


def _spanned(window: bytes, cut: int, specials: Sequence[bytes]) -> bool:
    """Whether some special token occurrence starts before ``cut`` and ends after it."""
    return any(s in window[max(0, cut - len(s) + 1) : cut + len(s) - 1] for s in specials)


def _find_cut(window: bytes, specials: Sequence[bytes], start: int) -> int | None:
    """The first safe cut at or after ``start`` in ``window`` (an offset into it), or None.

    The start of a special token is preferred; no cut may fall inside a special token (``window`` holds
    ``start`` bytes of context before the search, enough to see one that began earlier).
    """
    best = None
    for s in specials:
        i = window.find(s, start)
        while i >= 0 and _spanned(window, i, specials):
            i = window.find(s, i + 1)
        if i >= 0 and (best is None or i < best):
            best = i
    if best is not None:
        return best
    for pat in _SAFE_CUTS:
        for m in pat.finditer(window, start):
            cut = m.end()
            if cut < len(window) and not _spanned(window, cut, specials):
                return cut
    return None


def chunk_boundaries(
    f: BinaryIO, target_size: int, special_tokens: Sequence[str] = (), max_search: int = 8 << 20
) -> list[int]:
    """Byte offsets ``[0, b1, ..., size]`` cutting the file into chunks of about ``target_size`` bytes.

    Every cut is at the start of a special token or at a position that is always a pre-token boundary, and never
    inside a special token, so each chunk can be decoded (cuts fall on ASCII bytes) and pre-tokenized on its own
    with the same result as the whole file. When no safe cut is found within ``max_search`` bytes after a target,
    the chunk grows.
    """
    f.seek(0, os.SEEK_END)
    size = f.tell()
    specials = [s.encode("utf-8") for s in special_tokens]
    longest = max((len(s) for s in specials), default=0)
    bounds = [0]
    target = target_size
    while target < size:
        pos = max(target, bounds[-1] + 1)
        cut = None
        step = 1 << 16
        while cut is None and pos < size and pos - target < max_search:
            lead = min(longest, pos)  # context before pos, to see a special spanning it
            f.seek(pos - lead)
            # windows overlap by the longest special, so one straddling two reads is still found
            window = f.read(lead + step + longest)
            found = _find_cut(window, specials, lead)
            if found is not None:
                cut = pos - lead + found
            else:
                pos += step
                step = min(step * 2, 1 << 20)
        if cut is None or cut >= size:
            if cut is None and pos < size:  # nothing safe within max_search: keep searching further on
                target = pos
                continue
            break
        bounds.append(cut)
        target = cut + target_size
    bounds.append(size)
    return bounds


def read_chunk(path: str | os.PathLike, start: int, end: int) -> str:
    """Decode bytes ``[start, end)`` of ``path`` as UTF-8; a clear error names the file and byte offset."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = start + exc.start
        raise ValueError(
            f"{os.fspath(path)}: not valid UTF-8 at byte offset {at} ({data[exc.start : exc.start + 4]!r}); "
            "lmfs tokenizes UTF-8 text: re-encode the file (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
