"""Specs for exact line deduplication and MinHash + LSH fuzzy document deduplication.

MinHash is randomized only in which pairs become LSH candidates (candidates are checked by exact Jaccard), so
the MinHash specs use near-duplicates with Jaccard >= 0.8 and enough hash functions / bands that a correct
implementation misses such a pair with probability < 1e-6, and pairs meant to stay apart sit >= 0.1 below
the threshold. Which member of a cluster survives is not prescribed: exactly one must, byte for byte unchanged.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specs.data import reference_dedup as ref

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _write(folder: Path, files: dict[str, bytes | str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        p = folder / name
        p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        paths.append(p)
    return paths


def _read_all(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def _line_dedup(adapter, root: Path, files: dict[str, bytes | str]) -> dict[str, bytes]:
    paths = _write(root / "in", files)
    out = root / "out"
    out.mkdir()
    adapter.run_exact_line_deduplication(paths, out)
    return _read_all(out)


# ----------------------------------------------------------------------------------------------- exact lines


@pytest.mark.points(3)
def test_exact_line_removes_lines_duplicated_across_and_within_files(adapter, tmp_path):
    files = {
        "a.txt": "header\nalpha\nshared\nbeta\nheader\ngamma\n",
        "b.txt": "shared\ndelta\nepsilon\n",
        "c.txt": "zeta\n",
    }
    out = _line_dedup(adapter, tmp_path, files)
    assert out == {
        "a.txt": b"alpha\nbeta\ngamma\n",  # 'header' twice in a.txt, 'shared' in a.txt and b.txt
        "b.txt": b"delta\nepsilon\n",
        "c.txt": b"zeta\n",
    }


@pytest.mark.points(1)
def test_exact_line_compares_whole_lines_exactly(adapter, tmp_path):
    """Prefixes, case and leading/trailing whitespace make different lines (and are written back as is); UTF-8 text survives unchanged."""
    files = {
        "a.txt": "the cat\nThe cat\nthe cat sat\n the cat\nthe cat \t\ncafé ☕\n",
        "b.txt": "the cat\ncafe ☕\n",
    }
    out = _line_dedup(adapter, tmp_path, files)
    assert out == {
        "a.txt": "The cat\nthe cat sat\n the cat\nthe cat \t\ncafé ☕\n".encode(),
        "b.txt": "cafe ☕\n".encode(),
    }


@pytest.mark.points(1)
def test_exact_line_empty_lines_are_lines_like_any_other(adapter, tmp_path):
    """A blank line that occurs more than once in the corpus is removed; a single blank line is kept."""
    files = {"a.txt": "one\n\ntwo\n\nthree\n", "b.txt": "four\n", "c.txt": "five\n\nsix\n"}
    out = _line_dedup(adapter, tmp_path, files)
    assert out == {"a.txt": b"one\ntwo\nthree\n", "b.txt": b"four\n", "c.txt": b"five\nsix\n"}
    single = _line_dedup(adapter, tmp_path / "single", {"a.txt": "one\n\ntwo\n", "b.txt": "three\n"})
    assert single == {"a.txt": b"one\n\ntwo\n", "b.txt": b"three\n"}


@pytest.mark.points(1)
def test_exact_line_writes_same_basenames_and_leaves_inputs(adapter, tmp_path):
    """Inputs from different folders land in output_directory under their basenames; inputs are not modified;
    a file whose lines are all duplicates becomes an empty file."""
    p1 = _write(tmp_path / "x", {"doc_1.txt": "a\nb\n"})[0]
    p2 = _write(tmp_path / "y" / "z", {"doc_2.txt": "b\nc\n"})[0]
    p3 = _write(tmp_path / "y", {"doc_3.txt": "a\nc\n"})[0]
    out = tmp_path / "out"
    out.mkdir()
    adapter.run_exact_line_deduplication([p1, p2, p3], out)
    assert _read_all(out) == {"doc_1.txt": b"", "doc_2.txt": b"", "doc_3.txt": b""}
    assert (p1.read_bytes(), p2.read_bytes(), p3.read_bytes()) == (b"a\nb\n", b"b\nc\n", b"a\nc\n")


LINE = st.one_of(
    st.sampled_from(
        [
            "",
            "the",
            "the end",
            "The end",
            "© 2024 all rights reserved",
            "menu",
            "  indented  ",
            "tab\t",
            "ünïcödé 🙂",
        ]
    ),
    st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12),
)


@pytest.mark.points(3)
def test_exact_line_matches_naive_reference(adapter):
    @FAST
    @given(corpus=st.lists(st.lists(LINE, max_size=15), min_size=1, max_size=5))
    def check(corpus):
        files = {
            f"f{i}.txt": "".join(line + "\n" for line in lines).encode() for i, lines in enumerate(corpus)
        }
        with tempfile.TemporaryDirectory() as d:
            assert _line_dedup(adapter, Path(d), files) == ref.exact_line_dedup(files)

    check()


@pytest.mark.points(1)
def test_missing_input_file_raises(adapter, tmp_path):
    present = _write(tmp_path / "in", {"a.txt": "hello world\n"})[0]
    absent = tmp_path / "in" / "nope.txt"
    (tmp_path / "out").mkdir()
    with pytest.raises(OSError):
        adapter.run_exact_line_deduplication([present, absent], tmp_path / "out")
    with pytest.raises(OSError):
        adapter.run_minhash_deduplication([present, absent], 100, 20, 3, 0.8, tmp_path / "out")


# ----------------------------------------------------------------------------------------------- MinHash


def _words(rng: random.Random, n: int) -> list[str]:
    """n distinct random lowercase words (unrelated documents share almost no n-grams)."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def _change_words(rng: random.Random, words: list[str], k: int) -> list[str]:
    """Replace k words, at least 10 positions apart, by fresh words."""
    words = list(words)
    positions = rng.sample(range(0, len(words), 10), k)
    for pos, new in zip(positions, _words(rng, k), strict=True):
        words[pos] = new + "q"  # the suffix keeps it from matching any existing word
    return words


def _minhash(
    adapter, root: Path, docs: dict[str, str], num_hashes=100, num_bands=20, ngrams=3, threshold=0.8
):
    paths = _write(root / "in", docs)
    out = root / "out"
    out.mkdir()
    adapter.run_minhash_deduplication(paths, num_hashes, num_bands, ngrams, threshold, out)
    kept = _read_all(out)
    for name, data in kept.items():
        assert name in docs, f"unexpected output file {name}"
        assert data == docs[name].encode("utf-8"), f"{name} was modified"
    return set(kept)


def _assert_one_per_cluster(kept: set[str], clusters: list[set[str]]) -> None:
    for cluster in clusters:
        assert len(kept & cluster) == 1, f"cluster {sorted(cluster)} -> kept {sorted(kept & cluster)}"


@pytest.mark.points(2)
def test_minhash_collapses_documents_with_a_few_words_changed(adapter, tmp_path):
    rng = random.Random(1)
    base = _words(rng, 300)
    docs = {
        "base.txt": " ".join(base),
        "two_changed.txt": " ".join(_change_words(rng, base, 2)),
        "three_changed.txt": " ".join(_change_words(rng, base, 3)),
        "other.txt": " ".join(_words(random.Random(2), 300)),
    }
    kept = _minhash(adapter, tmp_path, docs)
    _assert_one_per_cluster(kept, [{"base.txt", "two_changed.txt", "three_changed.txt"}, {"other.txt"}])


@pytest.mark.points(2)
def test_minhash_normalizes_case_punctuation_whitespace_and_accents(adapter, tmp_path):
    """Documents that differ only in case, punctuation, whitespace and accents are exact duplicates once
    normalized (lowercase, punctuation removed, whitespace collapsed, NFD with combining marks removed)."""
    base = "the cafe on the corner serves resume writers and naive poets every single morning " * 3
    base += " ".join(_words(random.Random(3), 60))
    shouting = base.upper()
    punctuated = ", ".join(base.split(" ")).replace("corner,", "corner!?").replace("poets,", "poets.") + "."
    spaced = "  " + base.replace(" ", " \n\t ") + "\n"
    accented = base.replace("cafe", "café").replace("resume", "résumé").replace("naive", "naïve")
    decomposed = accented.replace("é", "e\u0301")
    docs = {
        "base.txt": base,
        "shouting.txt": shouting,
        "punctuated.txt": punctuated,
        "spaced.txt": spaced,
        "accented.txt": accented,
        "decomposed.txt": decomposed,
        "mixed.txt": "  " + punctuated.upper().replace("CAFE", "CAFÉ") + " ",
        "other.txt": " ".join(_words(random.Random(4), 120)),
    }
    kept = _minhash(adapter, tmp_path, docs, threshold=0.95)
    _assert_one_per_cluster(kept, [set(docs) - {"other.txt"}, {"other.txt"}])


@pytest.mark.points(1)
def test_minhash_collapses_exact_duplicates(adapter, tmp_path):
    text = " ".join(_words(random.Random(5), 80)) + "\n"
    docs = {f"copy_{i}.txt": text for i in range(5)} | {"other.txt": " ".join(_words(random.Random(6), 80))}
    kept = _minhash(adapter, tmp_path, docs)
    _assert_one_per_cluster(kept, [{f"copy_{i}.txt" for i in range(5)}, {"other.txt"}])


@pytest.mark.points(2)
def test_minhash_keeps_both_documents_below_the_threshold(adapter, tmp_path):
    """The threshold applies to the true Jaccard similarity: with one row per band every pair sharing an n-gram
    is almost surely a candidate, but pairs at Jaccard ~0.33 and ~0.66 stay apart at threshold 0.8."""
    rng = random.Random(7)
    a = _words(rng, 200)
    half = a[:100] + _words(random.Random(8), 100)  # 3-gram Jaccard with a: 98 / 298 ~ 0.33
    most = _words(random.Random(9), 200)
    most_b = most[:160] + _words(random.Random(10), 40)  # 158 / 238 ~ 0.66
    docs = {
        n: " ".join(w)
        for n, w in {"a.txt": a, "half.txt": half, "most.txt": most, "most_b.txt": most_b}.items()
    }
    assert ref.jaccard(ref.ngrams(docs["a.txt"], 3), ref.ngrams(docs["half.txt"], 3)) < 0.35
    assert ref.jaccard(ref.ngrams(docs["most.txt"], 3), ref.ngrams(docs["most_b.txt"], 3)) < 0.7
    kept = _minhash(adapter, tmp_path, docs, num_hashes=100, num_bands=100, threshold=0.8)
    assert kept == set(docs)


@pytest.mark.points(2)
def test_minhash_clusters_are_transitive(adapter, tmp_path):
    """A~B and B~C (Jaccard ~0.82) but A, C at ~0.67 < 0.75: A, B and C form one cluster, one survives."""
    rng = random.Random(11)
    a = _words(rng, 100)
    fresh = _words(random.Random(12), 20)
    b = [fresh[i // 10] + "q" if i % 10 == 0 else w for i, w in enumerate(a)]  # 10 words replaced
    c = [fresh[10 + (i - 5) // 10] + "q" if i % 10 == 5 else w for i, w in enumerate(b)]  # 10 more
    docs = {"a.txt": " ".join(a), "b.txt": " ".join(b), "c.txt": " ".join(c)}
    sets = {n: ref.ngrams(t, 1) for n, t in docs.items()}
    assert ref.jaccard(sets["a.txt"], sets["b.txt"]) > 0.8 and ref.jaccard(sets["b.txt"], sets["c.txt"]) > 0.8
    assert ref.jaccard(sets["a.txt"], sets["c.txt"]) < 0.7
    for order in (["a.txt", "b.txt", "c.txt"], ["b.txt", "a.txt", "c.txt"], ["c.txt", "a.txt", "b.txt"]):
        root = tmp_path / "_".join(order)
        kept = _minhash(adapter, root, {n: docs[n] for n in order}, num_bands=50, ngrams=1, threshold=0.75)
        assert len(kept) == 1, f"input order {order}: kept {sorted(kept)}"


@pytest.mark.points(2)
def test_minhash_leaves_distinct_documents_untouched(adapter, tmp_path):
    rng = random.Random(13)
    docs = {
        f"doc_{i:02d}.txt": " ".join(_words(rng, rng.randint(20, 120))) + "\n\n  Ünïcode ✓\n"
        for i in range(30)
    }
    docs["short.txt"] = "hi"
    docs["empty_ish.txt"] = "lonely words here\r\n"
    assert _minhash(adapter, tmp_path, docs) == set(docs)


@pytest.mark.points(3)
def test_minhash_matches_naive_all_pairs_jaccard(adapter):
    """Random corpora of unrelated documents, each with 0-3 near-copies (1-3 words changed, or identical),
    shuffled: one survivor per cluster of the exact all-pairs Jaccard graph."""

    @FAST
    @given(seed=st.integers(0, 2**32 - 1), copies=st.lists(st.integers(0, 3), min_size=1, max_size=6))
    def check(seed, copies):
        rng = random.Random(seed)
        docs: list[str] = []
        for n_copies in copies:
            base = _words(rng, rng.randint(150, 250))  # 3 changes: Jaccard >= 0.88 with the base
            docs.append(" ".join(base))
            for _ in range(n_copies):
                k = rng.randint(0, 3)
                docs.append(" ".join(_change_words(rng, base, k) if k else base))
        rng.shuffle(docs)
        clusters = ref.jaccard_clusters(docs, 3, 0.7)
        names = [f"d{i:02d}.txt" for i in range(len(docs))]
        with tempfile.TemporaryDirectory() as d:
            kept = _minhash(adapter, Path(d), dict(zip(names, docs, strict=True)), threshold=0.7)
        _assert_one_per_cluster(kept, [{names[i] for i in c} for c in clusters])
        assert len(kept) == len(clusters)

    check()


@pytest.mark.points(1)
def test_minhash_is_deterministic(adapter, tmp_path):
    rng = random.Random(14)
    docs = {}
    for i in range(6):
        base = _words(rng, 100)
        docs[f"b{i}.txt"] = " ".join(base)
        docs[f"v{i}.txt"] = " ".join(_change_words(rng, base, 2))
    first = _minhash(adapter, tmp_path / "one", docs)
    second = _minhash(adapter, tmp_path / "two", docs)
    assert first == second and len(first) == 6


@pytest.mark.points(1)
def test_minhash_rejects_bands_not_dividing_hashes(adapter, tmp_path):
    paths = _write(tmp_path / "in", {"a.txt": "some words here", "b.txt": "other words there"})
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError):
        adapter.run_minhash_deduplication(paths, 100, 7, 2, 0.8, tmp_path / "out")
