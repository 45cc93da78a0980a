"""The C MinHash kernel (lmfs.data._cminhash) against the numpy reference in lmfs.data.dedup.

Normalized text, signatures, n-gram hash sets, offsets and LSH cluster roots must be bit-identical between the
backends, for every minimum loop the machine offers. Skipped when the extension is not built, except under
``CI`` (set there: a missing build must fail).
"""

from __future__ import annotations

import os
import random
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmfs.data import dedup, native
from lmfs.data.dedup import MinHasher, _char_output, lsh_clusters, minhash_texts, normalize_text


@pytest.fixture(scope="module")
def cmh():
    try:
        return native.load_minhash("c")
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and lmfs.data._cminhash is not built: {exc}")
        pytest.skip(str(exc))


def _simd_variants(cmh) -> list[str]:
    out = []
    for name in ("generic", "avx2", "avx512"):
        try:
            cmh.set_simd(name)
        except ValueError:
            continue
        out.append(name)
    return out


@pytest.fixture
def each_simd(cmh):
    """Runs the body once per available minimum loop (restores the fastest afterwards)."""
    variants = _simd_variants(cmh)
    yield variants
    cmh.set_simd(variants[-1])


# text biased toward where normalization is subtle: case, accents (precomposed and combining), punctuation
# (ASCII and not), every kind of whitespace, sigma (final form by context), dotted capital I (lower() alone
# would give i + a combining dot), canonical singletons (Greek question mark -> ';', Angstrom sign,
# en quad -> en space), Hangul (decomposes to jamo), astral letters with case, emoji
PIECES = [
    " ", "  ", "\n", "\t", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2000", "\u2028",
    "\u3000", "\u200b", "\ufeff", "a", "Z", "the", "WORD", "Café", "cafe\u0301", "\u0301", "\u0327", "RÉSUMÉ",
    "é", "Å", "\u212b", "ß", "ẞ", "ǅ", "ﬁ", "İ", "ı", "Σ", "σ", "ς", "ΣΑΣ", "ὈΔΥΣΣΕΎΣ", "ό", "\u037e", "\u0387",
    "!", ",", ".", "'", "-", "_", "$", "+", "«", "»", "“", "”", "—", "…", "•", "¿", "。", "、", "日本語", "한국어",
    "\U00010400", "\U0001e900", "🙂", "👍🏽", "\U0001d15e", "0", "12", "١٢", "½", "Ⅻ",
]  # fmt: skip
unicode_chars = st.characters(exclude_categories=("Cs",))
texty = st.lists(st.one_of(st.sampled_from(PIECES), unicode_chars), max_size=60).map("".join)
wordy = st.lists(st.sampled_from(["a", "b", "c", "Dé", "e!", "Σ", "x y", "  ", "\n", "İ", "ok,"]), max_size=40).map(
    " ".join
)


@settings(max_examples=500, deadline=None)
@given(texty)
def test_normalize_matches_reference(cmh, text):
    assert cmh.normalize(text, _char_output, normalize_text) == normalize_text(text)


def test_normalize_matches_reference_on_every_code_point(cmh):
    """All of the BMP and plane 1, plus samples of the other planes, in one string (so NFD sees neighbours);
    code points whose output needs context (capital sigma) are checked separately, surrogates cannot be
    encoded by either backend."""
    cps = [*range(0x20000), *range(0x20000, 0x110000, 97)]
    chars = [chr(c) for c in cps if not 0xD800 <= c < 0xE000]
    every = "".join(c for c in chars if _char_output(ord(c)) is not None)
    assert len(every) > 100_000
    assert cmh.normalize(every, _char_output, normalize_text) == normalize_text(every)
    # and each one next to ASCII letters, in a shuffled order, as words
    rng = random.Random(0)
    sample = rng.sample(chars, 20_000)
    text = " ".join(f"x{c}Y" for c in sample)
    assert cmh.normalize(text, _char_output, normalize_text) == normalize_text(text)


@pytest.mark.parametrize(
    "text",
    ["ΣΑΣ", "ΟΔΥΣΣΕΥΣ ΚΑΙ", "aΣ", "Σa", "a Σ. b", "ὈΔΥΣΣΕΎΣ", "İSTANBUL Σ", "Σ\u0301", "x\u0301Σ"],
)
def test_sigma_in_context_falls_back_to_the_reference(cmh, text):
    assert _char_output(0x03A3) is None
    assert cmh.normalize(text, _char_output, normalize_text) == normalize_text(text)
    a = MinHasher(16, 2, backend="c").signatures([text, "plain words here"])
    b = MinHasher(16, 2, backend="numpy").signatures([text, "plain words here"])
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_lone_surrogate_raises_like_the_reference(cmh):
    for backend in ("c", "numpy"):
        with pytest.raises(UnicodeEncodeError):
            MinHasher(8, 3, backend=backend).signatures(["fine text", "bad \ud800 text"])


def test_char_output_follows_the_reference_rules():
    assert _char_output(ord("A")) == b"a"
    assert _char_output(ord(",")) == b""
    assert _char_output(ord("é")) == b"e"
    assert _char_output(0x0301) == b""  # combining acute: deleted
    assert _char_output(0x3000) == b" " and _char_output(ord("\n")) == b" "
    assert _char_output(0x0130) == b"i"  # İ: NFD splits off the dot (deleted) before lower() could add one
    assert _char_output(0x037E) == b""  # Greek question mark: NFD is ';'
    assert _char_output(0xD800) is None
    assert normalize_text("x\u0130y") == "xiy"


def _same(a, b):
    assert a[0].dtype == b[0].dtype == np.uint64 and a[0].shape == b[0].shape
    assert np.array_equal(a[0], b[0]), "signatures differ"
    assert a[1].dtype == b[1].dtype and np.array_equal(a[1], b[1]), "n-gram hashes differ"
    assert a[2].dtype == b[2].dtype == np.int64 and np.array_equal(a[2], b[2]), "offsets differ"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.one_of(texty, wordy), max_size=12),
    st.sampled_from([1, 3, 8, 64, 70, 128, 130]),
    st.integers(1, 7),
)
def test_signatures_match_reference(cmh, each_simd, texts, num_hashes, ngrams):
    ref = MinHasher(num_hashes, ngrams, backend="numpy").signatures(texts)
    for simd in each_simd:
        cmh.set_simd(simd)
        _same(MinHasher(num_hashes, ngrams, backend="c").signatures(texts), ref)


def test_signatures_match_reference_on_long_documents(cmh, each_simd):
    """Documents long enough for the radix sort (and repeated n-grams to deduplicate)."""
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(300)] + ["Ünï", "çödé", "—", "Σ"]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.choice([0, 3, 49, 50, 400, 3000]))) for _ in range(40)]
    texts.append(" ".join(["same five words here again"] * 300))
    ref = MinHasher(128, 5, backend="numpy").signatures(texts)
    for simd in each_simd:
        cmh.set_simd(simd)
        _same(MinHasher(128, 5, backend="c").signatures(texts), ref)


def _near_dups(rng: random.Random, n_docs: int) -> list[str]:
    base = [" ".join(rng.choice("abcdefghij") * rng.randint(1, 3) for _ in range(rng.randint(0, 40))) for _ in range(4)]
    out = []
    for _ in range(n_docs):
        words = rng.choice(base).split()
        for _ in range(rng.randint(0, 3)):
            if words:
                words[rng.randrange(len(words))] = rng.choice(["x", "y", "z"])
        out.append(" ".join(words))
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32),
    st.integers(0, 30),
    st.sampled_from([(16, 16), (16, 4), (32, 8), (12, 3), (8, 1)]),
    st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.0]),
    st.integers(1, 4),
)
def test_lsh_clusters_match_reference(cmh, seed, n_docs, hashes_bands, threshold, ngrams):
    texts = _near_dups(random.Random(seed), n_docs)
    num_hashes, num_bands = hashes_bands
    sigs, grams, offsets = MinHasher(num_hashes, ngrams, backend="numpy").signatures(texts)
    ref = lsh_clusters(sigs, grams, offsets, num_bands, threshold, backend="numpy")
    got = lsh_clusters(sigs, grams, offsets, num_bands, threshold, backend="c")
    assert got.dtype == np.int64 and np.array_equal(got, ref)
    assert np.array_equal(minhash_texts(texts, num_hashes, num_bands, ngrams, threshold, backend="c"), ref)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 60))
def test_lsh_clusters_match_reference_on_crowded_buckets(cmh, seed, n):
    """Signatures from a tiny alphabet (big buckets, many already-joined pairs) and random gram sets."""
    rng = np.random.default_rng(seed)
    sigs = rng.integers(0, 2, size=(n, 8), dtype=np.uint64)
    sets = [np.unique(rng.integers(0, 6, size=rng.integers(0, 5), dtype=np.uint64)) for _ in range(n)]
    offsets = np.concatenate(([0], np.cumsum([s.size for s in sets]))).astype(np.int64)
    grams = np.concatenate(sets) if sets else np.zeros(0, dtype=np.uint64)
    for bands, thr in ((8, 0.5), (4, 0.34), (2, 1.0), (1, 0.0)):
        ref = lsh_clusters(sigs, grams, offsets, bands, thr, backend="numpy")
        assert np.array_equal(lsh_clusters(sigs, grams, offsets, bands, thr, backend="c"), ref)


def test_lsh_rejects_bad_shapes(cmh):
    sigs = np.zeros((3, 8), dtype=np.uint64)
    with pytest.raises(ValueError):
        cmh.lsh_roots(sigs, 3, 8, np.zeros(0, np.uint64), np.zeros(3, np.int64), 2, 0.8)  # offsets too short
    with pytest.raises(ValueError):
        cmh.lsh_roots(sigs, 3, 8, np.zeros(1, np.uint64), np.array([0, 2, 1, 1], np.int64), 2, 0.8)
    with pytest.raises(ValueError):
        cmh.lsh_roots(sigs, 3, 8, np.zeros(0, np.uint64), np.zeros(4, np.int64), 3, 0.8)  # 8 % 3


def test_synthetic_crawl_identical_between_backends(cmh, small_crawl):
    """The real workload: extracted pages of the synthetic crawl plus the CC sample (many scripts)."""
    from lmfs.data.extract import extract_text_from_html_bytes
    from lmfs.data.readers import read_shard

    texts = []
    for p in [*small_crawl["shards"], small_crawl["cc"]]:
        for d in read_shard(p, lambda r, x: None):
            t = extract_text_from_html_bytes(d.raw)
            if t is not None:
                texts.append(t)
    assert len(texts) > 90 and any(not t.isascii() for t in texts)
    ref = MinHasher(128, 5, backend="numpy").signatures(texts)
    got = MinHasher(128, 5, backend="c").signatures(texts)
    _same(got, ref)
    a = lsh_clusters(*ref, 16, 0.8, backend="numpy")
    assert np.array_equal(lsh_clusters(*got, 16, 0.8, backend="c"), a)
    assert (a != np.arange(a.size)).sum() > 0  # the crawl has duplicates: the comparison is not vacuous


def test_backend_switch(monkeypatch):
    monkeypatch.setenv(native.BACKEND_ENV, "numpy")
    assert MinHasher(4, 2).backend == "numpy"
    monkeypatch.setenv(native.BACKEND_ENV, "bogus")
    with pytest.raises(ValueError, match="LMFS_DATA_BACKEND"):
        MinHasher(4, 2)
    with pytest.raises(ValueError, match="backend"):
        MinHasher(4, 2, backend="fortran")
    monkeypatch.delenv(native.BACKEND_ENV)
    expected = "c" if _built() else "numpy"
    assert MinHasher(4, 2).backend == expected


def test_missing_module_falls_back_or_fails_clearly(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "lmfs.data._cminhash":
            raise ImportError("not built")
        return real(name, *a, **k)

    monkeypatch.setattr(native.importlib, "import_module", fake)
    assert native.load_minhash("auto") is None
    assert MinHasher(4, 2, backend="auto").backend == "numpy"
    with pytest.raises(ImportError, match="pip install -e"):
        native.load_minhash("c")


def _built() -> bool:
    try:
        return native.load_minhash("c") is not None
    except ImportError:
        return False


def test_reference_helpers_are_consistent():
    """The table is derived from the reference's own deletion rule."""
    for ch in "a,.\u0301é!¿—":
        kept = "".join(c for c in unicodedata.normalize("NFD", ch) if not dedup._deleted(c))
        assert _char_output(ord(ch)) == kept.lower().encode()
