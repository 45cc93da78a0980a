"""Turning a stream of token ids into a stream of text without breaking multi-byte characters."""

from __future__ import annotations

import codecs
from typing import Any


class TextStreamer:
    """Feed token ids one at a time; get back the text they complete.

    With a tokenizer that exposes ``vocab: dict[int, bytes]`` the bytes go through an incremental UTF-8
    decoder (a character split across tokens appears once it is whole). Otherwise the whole sequence is
    decoded each time and the new suffix returned, holding back a trailing U+FFFD that may still complete.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        vocab = getattr(tokenizer, "vocab", None)
        self._vocab = (
            vocab
            if isinstance(vocab, dict) and vocab and isinstance(next(iter(vocab.values())), bytes)
            else None
        )
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._ids: list[int] = []
        self._emitted = 0

    def push(self, token_id: int) -> str:
        """The text completed by ``token_id`` (possibly empty)."""
        if self._vocab is not None:
            return self._utf8.decode(self._vocab[token_id])
        self._ids.append(token_id)
        text = self.tokenizer.decode(self._ids)
        end = len(text)
        while end > self._emitted and text[end - 1] == "\ufffd":
            end -= 1
        piece, self._emitted = text[self._emitted : end], max(self._emitted, end)
        return piece

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character becomes U+FFFD)."""
        if self._vocab is not None:
            return self._utf8.decode(b"", final=True)
        text = self.tokenizer.decode(self._ids)
        piece, self._emitted = text[self._emitted :], len(text)
        return piece
