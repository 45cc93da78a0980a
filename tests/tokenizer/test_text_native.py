"""The C text kernels (lmfs.tokenizer._ctext) against the pure-Python reference, tiktoken and bad input.

Skipped when the extension is not built, except under ``CI`` (set there: a missing build must fail).
"""

from __future__ import annotations

import os
import pickle
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lmfs.paths import has_shared_data, shared_data
from lmfs.tokenizer import native
from lmfs.tokenizer.counting import count_pretokens, count_text
from lmfs.tokenizer.encode_file import encode_file
from lmfs.tokenizer.pretokenize import CL100K_PATTERN, GPT2_PATTERN, special_regex, split_on_specials
from lmfs.tokenizer.tokenizer import Tokenizer
from tests.tokenizer.helpers import require_native

EOT = "<|endoftext|>"
GPT2_RE = regex.compile(GPT2_PATTERN)


@pytest.fixture(scope="module")
def ctext():
    return require_native("_ctext")


@pytest.fixture(scope="module")
def gpt2_pair(ctext, gpt2_tokenizer):
    """The same GPT-2 tokenizer twice: encoding in C and in pure Python; specials that overlap."""
    specials = [EOT, EOT + EOT, "<|x|>", "<|"]
    c = Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges, specials, backend="c")
    py = Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges, specials, backend="python")
    assert c.backend == "c" and py.backend == "python"
    return c, py


# text biased toward the places where the GPT-2 regex is subtle
PIECES = [
    " ", "  ", "   ", "\n", "\n\n", "\t", "\r\n", "\r", "\x0b", "\x0c", "\x85", "\u00a0", "\u1680", "\u2000",
    "\u2009", "\u2028", "\u3000", "\u200b", "\ufeff", "\x1c", "\x1f", "'s", "'t", "'re", "'ve", "'m", "'ll",
    "'d", "'S", "'LL", "'", "''", "\u2019s", "a", "Z", "the", "é", "e\u0301", "\u0301", "日本", "ß", "ǅ", "0",
    "12", "١٢", "५", "½", "²", "Ⅻ", "〇", "!", ".,", "?!", "-", "_", "$", "🙂", "👍🏽", "\U0001f1fa\U0001f1f8",
    EOT, "<|", "|>", "<|x|>",
]  # fmt: skip
unicode_chars = st.characters(exclude_categories=("Cs",))
texty = st.lists(st.one_of(st.sampled_from(PIECES), unicode_chars), max_size=60).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=texty)
def test_scanner_equals_regex(ctext, text: str) -> None:
    expected = GPT2_RE.findall(text)
    assert [t.decode("utf-8") for t in ctext.pretokenize(text.encode("utf-8"))] == expected


@settings(max_examples=200, deadline=None)
@given(text=st.text(unicode_chars, max_size=30))
def test_scanner_equals_regex_on_any_text(ctext, text: str) -> None:
    assert [t.decode("utf-8") for t in ctext.pretokenize(text.encode("utf-8"))] == GPT2_RE.findall(text)


def test_scanner_examples(ctext) -> None:
    cases = {
        "a  b": ["a", " ", " b"],
        "a \n b": ["a", " \n", " b"],
        "a\u00a0 b": ["a", "\u00a0", " b"],
        "a \u00a0b": ["a", " ", "\u00a0", "b"],
        "x  ": ["x", "  "],
        "I'm 'Ll they're": ["I", "'m", " '", "Ll", " they", "'re"],
        "1½ ٣": ["1½", " ٣"],
        "\n\nx": ["\n", "\n", "x"],
    }
    for text, expected in cases.items():
        assert GPT2_RE.findall(text) == expected, text  # the examples are right...
        assert [t.decode() for t in ctext.pretokenize(text.encode())] == expected, text  # ...and C agrees


def test_class_table_is_regexs(ctext) -> None:
    table = native.gpt2_class_table()
    rng = random.Random(0)
    for cp in [*range(0x3000), *rng.sample(range(0x3000, 0x110000), 20_000)]:
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        expected = (
            1
            if regex.match(r"\p{L}", c)
            else 2
            if regex.match(r"\p{N}", c)
            else 3
            if regex.match(r"\s", c)
            else 0
        )
        assert table[cp] == expected, hex(cp)


@settings(max_examples=200, deadline=None)
@given(text=texty)
def test_split_specials_equals_regex(ctext, text: str) -> None:
    specials = [EOT, EOT + EOT, "<|", "<|x|>"]
    expected = [(p.encode(), s) for p, s in split_on_specials(text, special_regex(specials))]
    assert ctext.split_specials(text.encode(), [s.encode() for s in specials]) == expected


@settings(max_examples=300, deadline=None)
@given(text=texty)
def test_encode_c_equals_python(gpt2_pair, text: str) -> None:
    c, py = gpt2_pair
    expected = py.encode(text)
    assert c.encode(text) == expected
    assert c._encode_plain(text) == py._encode_plain(text)


def test_encode_overlapping_specials(gpt2_pair) -> None:
    c, py = gpt2_pair
    for text in [EOT * 3, f"a{EOT}{EOT}b", f"<|{EOT}<|x|>|>", "<|<|x", EOT[:-1], f" {EOT} "]:
        assert c.encode(text) == py.encode(text), text
    assert c.encode(EOT * 3) == [c.special_to_id[EOT + EOT], c.special_to_id[EOT]]


def test_lone_surrogates_take_the_python_path(gpt2_pair) -> None:
    c, py = gpt2_pair
    for text in ["a\ud800b", "\udfff", f"x{EOT}\ud83d y"]:
        assert c.encode(text) == py.encode(text)
        assert list(c.encode_iterable([text])) == py.encode(text)


@settings(max_examples=100, deadline=None)
@given(text=texty, size=st.integers(1, 20))
def test_encode_iterable_c(gpt2_pair, text: str, size: int) -> None:
    c, py = gpt2_pair
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    assert list(c.encode_iterable(pieces)) == py.encode(text)


@settings(max_examples=200, deadline=None)
@given(text=texty, use_eot=st.booleans())
def test_count_text_c_equals_python(ctext, text: str, use_eot: bool) -> None:
    specials = [EOT, "<|x|>"] if use_eot else []
    c = count_text(text, specials, backend="c")
    assert c == count_text(text, specials, backend="python")
    assert all(type(k) is str for k in c)


def test_counter_object(ctext) -> None:
    a = ctext.Counter([b"<|e|>"])
    a.feed(b"the cat<|e|> the dog")
    b = ctext.Counter([b"<|e|>"])
    b.feed(b" the end")
    assert a.to_dict() == {b"the": 1, b" cat": 1, b" the": 1, b" dog": 1} and a.total == 4
    a.merge(b)
    merged = ctext.Counter()
    merged.loads(a.dumps())
    assert merged.to_dict() == {b"the": 1, b" cat": 1, b" the": 2, b" dog": 1, b" end": 1}
    assert merged.to_dict(Counter({"x": 1}), str_keys=True) == Counter(
        {"x": 1, "the": 1, " cat": 1, " the": 2, " dog": 1, " end": 1}
    )
    assert len(merged) == 5
    with pytest.raises(ValueError, match="malformed"):
        merged.loads(a.dumps()[:-1])
    with pytest.raises(TypeError):
        pickle.dumps(a)


@pytest.mark.parametrize("workers", [1, 2])
def test_count_pretokens_c_equals_python(ctext, tmp_path: Path, corpus_en: str, workers: int) -> None:
    path = tmp_path / "c.txt"
    path.write_text((corpus_en + EOT + "\n") * 3, encoding="utf-8")
    c = count_pretokens(path, [EOT], num_workers=workers, chunk_bytes=30_000, backend="c")
    assert c == count_pretokens(path, [EOT], num_workers=workers, chunk_bytes=30_000, backend="python")
    assert count_pretokens(path, [EOT], num_workers=workers, as_bytes=True, backend="c") == Counter(
        {k.encode(): v for k, v in c.items()}
    )


def test_count_pretokens_c_worker_error(ctext, tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good text\n" * 50_000 + b"caf\xe9\n" + b"more\n" * 10)
    with pytest.raises(ValueError, match=r"bad\.txt: not valid UTF-8 at byte offset 500003"):
        count_pretokens(path, num_workers=2, chunk_bytes=100_000, backend="c")


# ----------------------------------------------------------------------------------------------- vs tiktoken


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    tiktoken = pytest.importorskip("tiktoken")
    if not has_shared_data("tokenizers", "tiktoken_cache"):
        pytest.skip("needs ../shared/data/tokenizers/tiktoken_cache")
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared_data("tokenizers", "tiktoken_cache")))
    return tiktoken.get_encoding("gpt2")


def _shared_texts() -> list[Path]:
    if not has_shared_data("text"):
        return []
    files = sorted(p for p in shared_data("text").iterdir() if p.is_file())
    if has_shared_data("corpus", "gutenberg_valid.txt"):
        files.append(shared_data("corpus", "gutenberg_valid.txt"))
    return files


@pytest.mark.parametrize("path", _shared_texts(), ids=lambda p: p.name)
def test_c_encode_equals_tiktoken_on_shared_files(ctext, gpt2_tokenizer, tiktoken_gpt2, path: Path) -> None:
    tok = Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges, [EOT], backend="c")
    text = path.read_text(encoding="utf-8")
    assert tok.encode(text) == tiktoken_gpt2.encode(text, allowed_special={EOT})


def test_cl100k_through_encode_pieces_equals_tiktoken(ctext) -> None:
    tiktoken = pytest.importorskip("tiktoken")
    sha = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
    if not has_shared_data("tokenizers", "tiktoken_cache", sha):
        pytest.skip("needs the cl100k_base file in ../shared/data/tokenizers/tiktoken_cache")
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared_data("tokenizers", "tiktoken_cache")))
    from lmfs.tokenizer.formats import load_tiktoken

    ref = tiktoken.get_encoding("cl100k_base")
    tok = load_tiktoken(shared_data("tokenizers", "tiktoken_cache", sha), "cl100k_base")
    tok = Tokenizer(tok.vocab, tok.merges, tok.special_tokens, pattern=CL100K_PATTERN, backend="c")
    assert tok.backend == "c"
    for name in ("corpus.en", "german.txt", "address.txt", "tinystories_sample.txt"):
        text = shared_data("text", name).read_text(encoding="utf-8")
        assert tok.encode(text) == ref.encode(text, allowed_special="all"), name
    odd = "Numbers 1234567 and CAPS DON'T, tabs\t\t\n\n  spaces   \r\n🙂 ünï"
    assert tok.encode(odd) == ref.encode(odd)
    assert list(tok.encode_iterable([odd] * 3)) == ref.encode(odd * 3)


# ----------------------------------------------------------------------------------------------- robustness


def test_empty_and_invalid_utf8(ctext, gpt2_pair) -> None:
    c, _ = gpt2_pair
    enc = c._native_encoder()
    assert ctext.pretokenize(b"") == [] and enc.encode(b"") == [] and enc.encode_array(b"", 2) == b""
    assert enc.encode_pieces([]) == [] and ctext.split_specials(b"", [b"x"]) == []
    rng = random.Random(1)
    for _ in range(300):
        data = bytes(rng.choice([0x20, 0x27, 0x61, 0x0A, 0x80, 0xBF, 0xC3, 0xE2, 0xED, 0xF0, 0xF4, 0xFF, 0x31])
                     for _ in range(rng.randrange(40)))  # fmt: skip
        pieces = ctext.pretokenize(data)
        assert b"".join(pieces) == data and all(pieces)
        assert c.decode_bytes(enc.encode(data)) == data
        counter = ctext.Counter()
        counter.feed(data)
        assert sum(counter.to_dict().values()) == len(pieces)


def test_long_pieces_equal_python_bpe(gpt2_pair) -> None:
    c, py = gpt2_pair
    rng = random.Random(2)
    for n in (97, 300, 5000):
        word = "".join(rng.choice("abcdeéthrsn") for _ in range(n))
        assert c.encode(word) == py._bpe(word)
    assert c.encode("a" * 3000) == py._bpe("a" * 3000)


def test_huge_single_pretoken_is_not_quadratic(gpt2_pair) -> None:
    c, _ = gpt2_pair
    letters = bytes(97 + i % 26 for i in range(256))
    word = random.Random(3).randbytes(10_000_000).translate(letters).decode()  # 10 MB, one pre-token
    t0 = time.perf_counter()
    ids = c.encode(word)
    assert time.perf_counter() - t0 < 60
    assert c.decode(ids) == word and len(ids) < 0.7 * len(word)
    assert c.decode(c.encode("a" * 1_000_000)) == "a" * 1_000_000


def test_bad_arguments(ctext, gpt2_pair) -> None:
    enc = gpt2_pair[0]._native_encoder()
    with pytest.raises(TypeError):
        enc.encode("a str")
    with pytest.raises(TypeError):
        enc.encode_pieces([1, 2])
    with pytest.raises(TypeError):
        enc.encode_pieces(5)
    with pytest.raises(ValueError):
        enc.encode_array(b"x", 3)
    with pytest.raises(TypeError):
        ctext.pretokenize(None)
    with pytest.raises(TypeError):
        ctext.Counter([b"ok", "str"])
    with pytest.raises(ValueError):
        ctext.Counter([b""])
    with pytest.raises(TypeError):
        ctext.Counter().feed("text")
    with pytest.raises(TypeError):
        ctext.Counter().merge({})
    with pytest.raises(TypeError):
        ctext.Encoder([(1, 2)], list(range(256)))
    with pytest.raises(ValueError):
        ctext.Encoder([], list(range(255)))
    with pytest.raises((ValueError, OverflowError)):
        ctext.Encoder([(-1, 2, 3)], list(range(256)))
    with pytest.raises(TypeError):
        ctext.Encoder([], list(range(256)), [("<|x|>", 300)])
    with pytest.raises(ValueError):
        ctext.set_classes(b"\x00" * 10)
    with pytest.raises(TypeError):
        pickle.dumps(enc)


def test_to_dict_survives_a_target_key_that_reinitializes_the_counter(ctext) -> None:
    """to_dict looks keys up in the target dict, which may run a key's __eq__; one that re-initializes the
    Counter freed the table whose entry to_dict read next (a use after free)."""
    counter = ctext.Counter()
    counter.feed(b"hello world")

    class Key:
        def __init__(self, h: int) -> None:
            self.h = h

        def __hash__(self) -> int:
            return self.h

        def __eq__(self, other: object) -> bool:
            counter.__init__()
            return False

    target = {Key(hash(b"hello")): 1, Key(hash(b" world")): 1, b"x": 2}
    out = counter.to_dict(target)
    assert out is target and out[b"hello"] == 1 and out[b"x"] == 2 and len(counter) == 0


def test_encode_array_of_nothing_on_a_fresh_encoder(ctext) -> None:
    enc = ctext.Encoder([(97, 98, 256)], list(range(256)))
    assert enc.encode_array(b"", 4) == b"" and enc.encode_array(b"", 2) == b""  # no memcpy from NULL
    assert enc.encode_array(b"ab", 2) == bytes(np.array([256], dtype=np.uint16))


def test_tokenizer_pickles_without_its_encoder(gpt2_pair) -> None:
    c, py = gpt2_pair
    c.encode("warm the cache")
    clone = pickle.loads(pickle.dumps(c))
    assert clone._native is None and clone.encode("hello there") == py.encode("hello there")
    assert clone.backend == "c"


def test_python_backend_from_the_environment(monkeypatch, gpt2_tokenizer) -> None:
    monkeypatch.setenv(native.BACKEND_ENV, "python")
    tok = Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges, [EOT])
    assert tok.backend == "python" and tok.encode("hi there") == gpt2_tokenizer.encode("hi there")


@pytest.mark.parametrize("workers", [1, 2])
def test_encode_file_c(tmp_path: Path, gpt2_pair, corpus_en: str, workers: int) -> None:
    c, py = gpt2_pair
    text = (corpus_en + f"\n{EOT}{EOT}\n") * 2
    src = tmp_path / "in.txt"
    src.write_bytes(text.encode("utf-8"))
    for dtype in ("uint16", "uint32"):
        st_ = encode_file(c, src, tmp_path / "o.npy", num_workers=workers, chunk_bytes=20_000, dtype=dtype)
        arr = np.load(tmp_path / "o.npy")
        assert st_.backend == "c" and arr.dtype == dtype and arr.tolist() == py.encode(text)
