"""Tokenizer specs: round trips, special tokens, ids identical to tiktoken's gpt2, streaming."""

from __future__ import annotations

import io

import pytest

from specs.tokenizer.common import SHARED_TEXTS, gpt2_vocab_and_merges, read_text, shared_data, tiktoken_gpt2

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def gpt2(adapter):
    vocab, merges = gpt2_vocab_and_merges()
    return adapter.get_tokenizer(vocab, merges, [EOT])


@pytest.fixture(scope="module")
def gpt2_plain(adapter):
    vocab, merges = gpt2_vocab_and_merges()
    return adapter.get_tokenizer(vocab, merges)


ROUND_TRIP = {
    "ascii": "Hello, world! It's 2024 -- isn't it?\n\tTabs  and   spaces   ",
    "accented": "Café naïve façade — Ærøskøbing, Ångström, señor, crème brûlée",
    "emoji": "🙃 emoji: 👩‍👩‍👧‍👦 family, 🇫🇷 flag, ✨✨ sparkles 🚀",
    "cjk": "漢字とひらがな、한국어 텍스트, русский текст",
    "empty": "",
}


@pytest.mark.points(1)
@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_round_trip(gpt2, name: str) -> None:
    text = ROUND_TRIP[name]
    ids = gpt2.encode(text)
    assert all(isinstance(i, int) for i in ids)
    assert gpt2.decode(ids) == text
    if not text:
        assert ids == []


@pytest.mark.points(2)
@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_matches_tiktoken_on_strings(gpt2, name: str) -> None:
    assert gpt2.encode(ROUND_TRIP[name]) == tiktoken_gpt2().encode(ROUND_TRIP[name])


@pytest.mark.points(2)
@pytest.mark.parametrize("name", SHARED_TEXTS)
def test_matches_tiktoken_on_shared_texts(gpt2, name: str) -> None:
    text = read_text("text", name)
    ids = gpt2.encode(text)
    assert ids == tiktoken_gpt2().encode(text, allowed_special={EOT})
    assert gpt2.decode(ids) == text


@pytest.mark.points(4)
def test_matches_tiktoken_on_gutenberg_validation(gpt2) -> None:
    text = read_text("corpus", "gutenberg_valid.txt")
    assert gpt2.encode(text) == tiktoken_gpt2().encode(text, allowed_special={EOT})


@pytest.mark.points(2)
def test_without_special_tokens_eot_is_text(gpt2_plain) -> None:
    text = f"a{EOT}b"
    assert gpt2_plain.encode(text) == tiktoken_gpt2().encode(text, disallowed_special=())
    assert gpt2_plain.decode(gpt2_plain.encode(text)) == text


@pytest.mark.points(2)
@pytest.mark.parametrize(
    "text",
    [EOT, f"{EOT}hello", f"hello{EOT}", f"{EOT}{EOT}", f"\n{EOT}\n", f" {EOT} ", f"a{EOT}\n\n{EOT}b"],
)
def test_special_tokens_at_edges(gpt2, text: str) -> None:
    ids = gpt2.encode(text)
    assert ids == tiktoken_gpt2().encode(text, allowed_special={EOT})
    assert ids.count(50256) == text.count(EOT)
    assert gpt2.decode(ids) == text


@pytest.mark.points(3)
def test_overlapping_special_tokens_longest_first(adapter) -> None:
    vocab, merges = gpt2_vocab_and_merges()
    double = EOT + EOT
    tok = adapter.get_tokenizer(vocab, merges, [EOT, double])
    single_id = tok.encode(EOT)
    double_id = tok.encode(double)
    assert len(single_id) == 1 and len(double_id) == 1 and single_id != double_id
    ids = tok.encode(f"Hi{EOT}{EOT}{EOT}there")
    # longest match first: the double, then the single
    assert ids[1:3] == [double_id[0], single_id[0]]
    assert tok.decode(ids) == f"Hi{EOT}{EOT}{EOT}there"


@pytest.mark.points(2)
def test_special_token_that_is_a_substring_of_another(adapter) -> None:
    vocab, merges = gpt2_vocab_and_merges()
    short, long = "<|sep|>", "<|sep|>!"
    tok = adapter.get_tokenizer(vocab, merges, [short, long])
    (short_id,), (long_id,) = tok.encode(short), tok.encode(long)
    assert short_id != long_id
    assert tok.encode(f"{long}{short}x{short}!") == [long_id, short_id, *tok.encode("x"), long_id]


@pytest.mark.points(2)
def test_decode_replaces_malformed_utf8(adapter) -> None:
    vocab = {i: bytes([i]) for i in range(256)}
    tok = adapter.get_tokenizer(vocab, [])
    assert tok.decode([0xC3]) == "\ufffd"  # a lone lead byte
    assert tok.decode([ord("a"), 0xFF, ord("b")]) == "a\ufffdb"
    assert tok.decode([0xC3, 0xA9]) == "é"


@pytest.mark.points(3)
@pytest.mark.parametrize("name", ["corpus.en", "tinystories_sample.txt", "german.txt"])
def test_encode_iterable_equals_encode(gpt2, name: str) -> None:
    path = shared_data("text", name)
    with open(path, encoding="utf-8") as f:
        streamed = list(gpt2.encode_iterable(f))
    assert streamed == gpt2.encode(path.read_text(encoding="utf-8"))


@pytest.mark.points(2)
def test_encode_iterable_on_odd_chunks(gpt2) -> None:
    text = read_text("text", "tinystories_sample.txt") * 3
    for size in (1, 7, 50, 4096):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        assert list(gpt2.encode_iterable(iter(pieces))) == gpt2.encode(text), f"chunks of {size} chars"


@pytest.mark.points(3)
def test_encode_iterable_memory_is_bounded(gpt2) -> None:
    """Stream ~2 MB through encode_iterable without keeping the ids: peak Python memory stays well below it."""
    import tracemalloc

    line = read_text("text", "tinystories_sample.txt").replace(EOT, "")
    n_lines = 2_000_000 // len(line)

    def lines():
        for _ in range(n_lines):
            yield line

    tracemalloc.start()
    count = 0
    for _ in gpt2.encode_iterable(lines()):
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count > 400_000
    assert peak < 8e6, f"peak {peak / 1e6:.1f} MB for a 2 MB stream"


@pytest.mark.points(1)
def test_encode_iterable_with_file_handle_and_specials(gpt2) -> None:
    text = f"one{EOT}\ntwo {EOT}{EOT}\n\nthree\n" * 50
    assert list(gpt2.encode_iterable(io.StringIO(text))) == tiktoken_gpt2().encode(
        text, allowed_special={EOT}
    )
