"""Streaming decode: pieces join to the full text; characters split across tokens are not broken."""

from __future__ import annotations

from lmfs.generate.stream import TextStreamer

TEXT = "naïve café — 日本"


class ByteTokenizer:
    """One token per byte (so every multi-byte character is split across tokens)."""

    def __init__(self, expose_vocab: bool) -> None:
        if expose_vocab:
            self.vocab = {i: bytes([i]) for i in range(256)}

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def test_stream_pieces_join_to_the_text() -> None:
    for expose in (True, False):
        tok = ByteTokenizer(expose)
        streamer = TextStreamer(tok)
        pieces = [streamer.push(i) for i in tok.encode(TEXT)]
        pieces.append(streamer.flush())
        assert "".join(pieces) == TEXT
        assert not any("\ufffd" in p for p in pieces)
        assert "日" in pieces  # emitted whole once its third byte arrived


def test_incomplete_character_at_the_end_becomes_replacement() -> None:
    for expose in (True, False):
        streamer = TextStreamer(ByteTokenizer(expose))
        out = streamer.push(0x61) + streamer.push(0xE6)  # 'a' then the first byte of a 3-byte character
        assert out == "a"
        assert streamer.flush() == "\ufffd"
