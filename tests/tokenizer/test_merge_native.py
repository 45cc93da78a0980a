"""The C merge loop (lmfs.tokenizer._cmerge) against the pure-Python loop and the naive reference trainer.

Skipped when the extension is not built, except under CI (env ``CI`` set), where a missing module fails: CI must
never silently test only the Python loop.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmfs.paths import has_shared_data, shared_data
from lmfs.tokenizer.counting import count_text
from lmfs.tokenizer.train import TrainStats, train_bpe, train_from_counts
from specs.tokenizer.reference import naive_train_bpe
from tests.tokenizer.helpers import require_native

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def cmerge():
    return require_native("_cmerge")


def both(counts, vocab_size: int, specials=()):
    """(C result, Python result) of train_from_counts."""
    return (
        train_from_counts(counts, vocab_size, specials, backend="c"),
        train_from_counts(counts, vocab_size, specials, backend="python"),
    )


# ----------------------------------------------------------------------------------------------- properties

# a small alphabet with multi-byte UTF-8 (é: 2 bytes, €: 3 bytes) and pieces that repeat ("aaaa", "abab")
PIECES = ["a", "b", "c", "é", "€", "aa", "aaaa", "ab", "abab", "ba", "é€"]
pretoken = st.lists(st.sampled_from(PIECES), min_size=1, max_size=5).map("".join)
count_tables = st.dictionaries(pretoken, st.integers(min_value=1, max_value=40), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(counts=count_tables, extra=st.integers(min_value=0, max_value=40), seed=st.integers(0, 2**32 - 1))
def test_c_equals_python_on_random_tables(cmerge, counts: dict[str, int], extra: int, seed: int) -> None:
    vocab_size = 257 + extra  # one special token
    (vc, mc), (vp, mp) = both(counts, vocab_size, [EOT])
    assert mc == mp
    assert vc == vp
    # the order of the table must not matter
    items = list(counts.items())
    random.Random(seed).shuffle(items)
    assert train_from_counts(dict(items), vocab_size, [EOT], backend="c") == (vc, mc)


text_pieces = st.sampled_from(["a", "b", "é", "€", " ", "aaaa", "abab", " ab", "\n", "ba", "!", EOT])


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(text_pieces, min_size=1, max_size=40), extra=st.integers(min_value=0, max_value=30))
def test_c_equals_the_naive_reference(cmerge, pieces: list[str], extra: int) -> None:
    text = "".join(pieces)
    vocab_size = 257 + extra
    vocab, merges = train_from_counts(count_text(text, [EOT]), vocab_size, [EOT], backend="c")
    ref_vocab, ref_merges = naive_train_bpe(text, vocab_size, [EOT])
    if len(set(vocab.values())) < len(vocab):
        return  # two ids spell the same bytes: the reference, which works on bytes, cannot tell them apart
    assert merges == ref_merges
    assert set(vocab.values()) == ref_vocab


@settings(max_examples=100, deadline=None)
@given(counts=count_tables, seed=st.integers(0, 2**32 - 1))
def test_word_order_does_not_matter(cmerge, counts: dict[str, int], seed: int) -> None:
    cm = cmerge
    words = [w.encode() for w in counts]
    freqs = list(counts.values())
    base = cm.merge(words, freqs, 50, 256)
    order = list(range(len(words)))
    random.Random(seed).shuffle(order)
    assert cm.merge([words[i] for i in order], [freqs[i] for i in order], 50, 256) == base


# ----------------------------------------------------------------------------------------------- tie-breaks


def test_ties_go_to_the_greater_pair_of_byte_strings(cmerge) -> None:
    # after (a, b): (a, ab), (ab, b) and (b, a) all count 1; (b, a) is the greatest: "b" > "ab" > "a"
    assert cmerge.merge([b"aabba", b"ab"], [1, 2], 2, 256) == [(97, 98), (98, 97)]
    # a proper prefix is smaller: after (a, b) and (ab, c), the pairs (ab, d) and (abc, d) both count 2 and
    # (abc, d) wins because b"ab" < b"abc"
    assert cmerge.merge([b"abcd", b"abd", b"ab", b"abc"], [2, 2, 5, 3], 3, 256) == [
        (97, 98),
        (256, 99),
        (257, 100),
    ]


def test_ids_start_at_first_id(cmerge) -> None:
    assert cmerge.merge([b"aaaa"], [3], 5, 300) == [(97, 97), (300, 300)]
    assert cmerge.merge([b"abab", b"ab"], [1, 1], 5, 256) == [(97, 98), (256, 256)]
    # "aaa" merging (a, a) gives [aa, a] (left to right, non-overlapping)
    assert cmerge.merge([b"aaa"], [1], 5, 256) == [(97, 97), (256, 97)]


# ----------------------------------------------------------------------------------------------- real text


@pytest.mark.parametrize("vocab_size", [500, 2000])
def test_corpus_en(cmerge, corpus_en: str, vocab_size: int) -> None:
    counts = count_text(corpus_en, [EOT])
    (vc, mc), (vp, mp) = both(counts, vocab_size, [EOT])
    assert len(mc) == vocab_size - 257
    assert mc == mp and vc == vp


def test_gutenberg_10mb_at_10k(cmerge) -> None:
    if not has_shared_data("corpus", "gutenberg_train.txt"):
        pytest.skip("needs ../shared/data/corpus/gutenberg_train.txt")
    with open(shared_data("corpus", "gutenberg_train.txt"), "rb") as f:
        data = f.read(10_000_000)
    text = data[: data.rfind(b"\n") + 1].decode("utf-8")
    counts = count_text(text, [EOT])
    (vc, mc), (vp, mp) = both(counts, 10_000, [EOT])
    assert len(mc) == 10_000 - 257
    assert mc == mp and vc == vp


def test_train_bpe_reports_the_backend(cmerge, tmp_path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("low lower lowest newer newest " * 20, encoding="utf-8")
    runs = {}
    for backend in ("c", "python"):
        stats = TrainStats()
        runs[backend] = train_bpe(path, 280, [EOT], stats=stats, num_workers=1, backend=backend)
        assert stats.extra["backend"] == backend
    assert runs["c"] == runs["python"]


# ----------------------------------------------------------------------------------------------- edge cases


def test_degenerate_inputs(cmerge) -> None:
    assert cmerge.merge([], [], 100, 256) == []
    assert cmerge.merge((), (), 0, 256) == []
    assert cmerge.merge([b"ab"], [1], 0, 256) == []
    assert cmerge.merge([b"a", b"b", b""], [5, 5, 5], 10, 256) == []  # single bytes never merge
    assert cmerge.merge([b"ab", b"cd"], [0, -3], 10, 256) == []  # non-positive counts are ignored
    assert cmerge.merge([b"ab"], [1], 10**12, 256) == [(97, 98)]  # runs out of pairs early
    assert train_from_counts({}, 300, backend="c") == train_from_counts({}, 300, backend="python")


def test_huge_counts(cmerge) -> None:
    big = 2**40
    counts = {"ab": big, "abc": big - 1, "bc": 3 * big, "zz": 2**55}
    (vc, mc), (vp, mp) = both(counts, 270)
    assert mc == mp and vc == vp
    # beyond 64 bits the C loop refuses, and train_from_counts falls back to Python's ints
    with pytest.raises(OverflowError):
        cmerge.merge([b"ab"], [2**64], 1, 256)
    with pytest.raises(OverflowError):
        cmerge.merge([b"abcde", b"abcde "], [2**62, 2**62], 1, 256)
    counts = {"abcde": 2**62, "xabcde": 2**62, "ab": 2**70}
    (vc, mc), (vp, mp) = both(counts, 262)
    assert mc == mp and vc == vp


def test_bad_arguments_are_type_errors(cmerge) -> None:
    with pytest.raises(TypeError, match="words must be a sequence"):
        cmerge.merge(5, [1], 1, 256)
    with pytest.raises(TypeError, match=r"words\[1\] must be bytes, not str"):
        cmerge.merge([b"ab", "cd"], [1, 1], 1, 256)
    with pytest.raises(TypeError, match="freqs must be a sequence"):
        cmerge.merge([b"ab"], None, 1, 256)
    with pytest.raises(TypeError, match=r"freqs\[0\] must be an int, not float"):
        cmerge.merge([b"ab"], [1.5], 1, 256)
    with pytest.raises(TypeError, match="progress must be callable"):
        cmerge.merge([b"ab"], [1], 1, 256, progress=3)
    with pytest.raises(TypeError):
        cmerge.merge([b"ab"], [1], "1", 256)
    with pytest.raises(ValueError, match="differ in length"):
        cmerge.merge([b"ab"], [1, 2], 1, 256)
    with pytest.raises(ValueError, match="num_merges"):
        cmerge.merge([b"ab"], [1], -1, 256)
    with pytest.raises(ValueError, match="first_id"):
        cmerge.merge([b"ab"], [1], 1, 255)


def test_freq_index_that_mutates_the_lists(cmerge) -> None:
    """A freq's __index__ runs Python code in the middle of the argument scan; changing the lists there must not
    reach the C loop (it once wrote a word longer than the one counted past the end of its symbol array)."""
    words = [b"ab", b"cd", b"ef"]
    freqs: list = []

    class Evil:
        def __index__(self) -> int:
            words[0] = b"x" * 100_000
            words.append(b"yy")
            freqs.clear()
            return 3

    freqs += [5, Evil(), 2]
    assert cmerge.merge(words, freqs, 10, 256) == [(97, 98), (99, 100), (101, 102)]
    # a merge whose pair leaves no other dirty pair in the heap (heap_repair with nothing to sort)
    assert cmerge.merge([b"ab"], [1], 5, 256) == [(97, 98)]


def test_progress_callback(cmerge) -> None:
    words = [bytes([i, j, k]) for i in range(97, 110) for j in range(97, 110) for k in range(97, 100)]
    calls: list[int] = []
    merges = cmerge.merge(words, [1] * len(words), 200, 256, calls.append)
    assert len(merges) == 200 and sum(calls) == 200 and calls[:3] == [64, 64, 64]

    def boom(n: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        cmerge.merge(words, [1] * len(words), 200, 256, boom)
    assert cmerge.merge(words, [1] * len(words), 200, 256) == merges  # nothing left behind by the abort


def test_many_random_words_with_repeats(cmerge) -> None:
    rng = random.Random(7)
    counts: Counter[bytes] = Counter()
    for _ in range(3000):
        counts[bytes(rng.choice(b"aab\xc3\xa9") for _ in range(rng.randint(1, 12)))] += rng.randint(1, 5)
    (vc, mc), (vp, mp) = both(counts, 700)
    assert mc == mp and vc == vp
