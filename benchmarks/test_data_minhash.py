"""MinHash near-dedup on the synthetic crawl: lmfs (its C kernel, and its numpy reference) vs datasketch (MinHash +
MinHashLSH), same num_hashes 128 / 16 bands x 8 rows / threshold 0.8 / word 5-grams of the same normalized text.

Each side is timed from the extracted texts to the set of removed documents, single-threaded: normalization,
n-grams, signatures and LSH on both; lmfs also verifies every LSH candidate by the exact Jaccard of the n-gram
sets (datasketch does not, which is why its precision is lower). datasketch normalizes with lmfs's
``ngram_set`` (the reference Python normalization, the same text lmfs hashes) and uses its batch update.

The corpus is the extracted text of the clean, toxic, exact-duplicate and near-duplicate pages of a 2,000-page
synthetic crawl (the junk kinds — navigation-only, spam — are near-copies of each other by construction and
have no duplicate ground truth). A document counts as found when it is removed as a duplicate; the truth is
its ``dup_of``. ``extra_info``: documents, docs/s, precision, recall.

Target: lmfs >= 5x datasketch's docs/s at equal or better recall. ``lmfs-unverified`` accepts every LSH
candidate as datasketch does (no Jaccard check): the like-for-like decision rule. ``datasketch-hash-only`` is a stricter
bound: datasketch handed the n-gram byte strings ready-made, so only its hashing and LSH are timed.
"""

from __future__ import annotations

import os
import time

import pytest

from lmfs.paths import has_shared_data

pytestmark = pytest.mark.skipif(not has_shared_data("corpus", "gutenberg_train.txt"), reason="needs ../shared")

NUM_HASHES, NUM_BANDS, NGRAMS, THRESHOLD = 128, 16, 5, 0.8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    pytest.importorskip("resiliparse")
    from lmfs.data.extract import extract_text_from_html_bytes
    from lmfs.data.readers import read_shard
    from lmfs.data.synth import generate_crawl, load_truth

    out = tmp_path_factory.mktemp("minhash-crawl")
    paths = generate_crawl(out, num_docs=2000, num_shards=2, seed=11)
    truth = load_truth(out / "truth.jsonl")
    docs = []
    for p in paths:
        for d in read_shard(p, lambda r, x: None):
            if truth[d.id]["kind"] in ("clean", "toxic", "exact_dup", "near_dup"):
                docs.append((d.id, extract_text_from_html_bytes(d.raw)))
    ids = {i for i, _ in docs}
    dup = {i for i, _ in docs if truth[i]["dup_of"] in ids}
    return [t for _, t in docs], [i for i, _ in docs], dup


def lmfs_dedup(texts, backend="c", verify=THRESHOLD):
    from lmfs.data.dedup import minhash_texts

    roots = minhash_texts(texts, NUM_HASHES, NUM_BANDS, NGRAMS, verify, backend=backend)
    return {i for i in range(len(texts)) if roots[i] != i}


def datasketch_dedup(texts):
    from datasketch import MinHash, MinHashLSH

    from lmfs.data.dedup import ngram_set

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_HASHES, params=(NUM_BANDS, NUM_HASHES // NUM_BANDS))
    removed = set()
    for i, text in enumerate(texts):
        m = MinHash(num_perm=NUM_HASHES, seed=1)
        m.update_batch([g.encode("utf-8") for g in ngram_set(text, NGRAMS)])
        if lsh.query(m):
            removed.add(i)
        else:
            lsh.insert(str(i), m)
    return removed


def datasketch_hash_only(gram_sets):
    """datasketch given the n-gram byte strings ready-made (normalization and n-gram building untimed): only
    its MinHash and LSH. Not equal work — a bound that favours the peer."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_HASHES, params=(NUM_BANDS, NUM_HASHES // NUM_BANDS))
    removed = set()
    for i, grams in enumerate(gram_sets):
        m = MinHash(num_perm=NUM_HASHES, seed=1)
        m.update_batch(grams)
        if lsh.query(m):
            removed.add(i)
        else:
            lsh.insert(str(i), m)
    return removed


@pytest.mark.parametrize("impl", ["lmfs", "lmfs-unverified", "lmfs-numpy", "datasketch", "datasketch-hash-only"])
def test_minhash_dedup(benchmark, impl, corpus):
    backend = None
    texts, ids, dup = corpus
    texts_arg = texts
    if impl == "datasketch":
        pytest.importorskip("datasketch")
        fn, args = datasketch_dedup, ()
    elif impl == "datasketch-hash-only":
        pytest.importorskip("datasketch")
        from lmfs.data.dedup import ngram_set

        gram_sets = [[g.encode("utf-8") for g in ngram_set(t, NGRAMS)] for t in texts]
        fn, args = datasketch_hash_only, ()
        texts_arg = gram_sets
    elif impl in ("lmfs", "lmfs-unverified"):
        from lmfs.data import native

        try:
            mod = native.load_minhash("c")
        except ImportError as exc:
            pytest.skip(str(exc))
        backend = f"c ({mod.simd()})"
        # unverified: every LSH candidate is a duplicate (Jaccard check at 0.0), exactly datasketch's rule
        fn, args = lmfs_dedup, ("c", THRESHOLD if impl == "lmfs" else 0.0)
    else:
        backend = "numpy"
        fn, args = lmfs_dedup, ("numpy",)
    benchmark.group = "data-minhash-dedup"
    t0 = time.perf_counter()
    rounds = 3 if impl.startswith("datasketch") else 7
    removed = benchmark.pedantic(fn, args=(texts_arg, *args), rounds=rounds, iterations=1, warmup_rounds=1)
    found = {ids[i] for i in removed}
    tp = len(found & dup)
    precision = tp / len(found) if found else 0.0
    recall = tp / len(dup)
    benchmark.extra_info.update(
        impl=impl, documents=len(texts), docs_per_s=len(texts) / benchmark.stats.stats.median,
        precision=round(precision, 4), recall=round(recall, 4), duplicates_in_truth=len(dup),
        bytes=sum(len(t.encode()) for t in texts), wall_s=round(time.perf_counter() - t0, 2),
        load_1min=round(os.getloadavg()[0], 2),
    )
    if backend:
        benchmark.extra_info["backend"] = backend
    assert recall >= 0.85 and precision >= 0.85, (precision, recall)
