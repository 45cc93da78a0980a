"""The quality classifier: fastText, ``wiki`` (high quality) vs ``cc`` (raw crawl).

The course takes its positives from pages that Wikipedia links to. Offline, the closest stand-in with enough
text is **Project Gutenberg prose** (``../shared/data/corpus/gutenberg_train.txt``): edited, long-form,
well-formed English, which is what "a page a Wikipedia editor would cite" selects for; German Wikipedia text
would be the only real Wikipedia here, and it is 83 words. Negatives (``cc``) are **raw crawl**: windows of
lines of the real Common Crawl pages (``../shared/data/web``, all of them, whatever their language) plus the
low-quality page kinds of the synthetic crawl (:mod:`lmfs.data.synth`: spam, navigation-only boilerplate)
generated with their own seeds, as the pipeline's extractor sees them, plus generated crawl junk in six genres
(menus, product listings, keyword spam, word salad, post metadata, tag clouds) over the vocabulary of the
training books — so the classifier learns the shape of junk rather than a few templates' words.

Held-out evaluation (written beside the model as JSON and shown by ``lmfs data train-quality``): Gutenberg
books of ``gutenberg_valid.txt`` that neither training nor the synthetic benchmark crawl uses, synthetic junk
from another seed, and the line windows of real CC pages held out from training (half of the pages). The junk
templates are shared between training and test seeds, so that part of the score is optimistic; the real-page
part is the honest one.

``classify_quality(text) -> ("wiki" | "cc", probability of that label)``. The model is found at
``$LMFS_QUALITY_MODEL``, else ``reports/data/data/quality_model.ftz`` (written by ``lmfs data
train-quality``), else it is trained once into ``~/.cache/lmfs/`` (a few seconds, deterministic: one thread,
fixed seed).
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

from lmfs.data.fasttext_util import load_model, predict

__all__ = ["classify_quality", "default_model_path", "train_quality", "wiki_probability"]

TRAIN_PARAMS = {"lr": 0.5, "epoch": 10, "wordNgrams": 2, "dim": 32, "minCount": 2, "minn": 3, "maxn": 5,
                "bucket": 200_000, "thread": 1, "seed": 1}


def default_model_path() -> Path:
    env = os.environ.get("LMFS_QUALITY_MODEL")
    if env:
        return Path(env)
    from lmfs.paths import reports_dir

    committed = reports_dir() / "data" / "data" / "quality_model.ftz"
    if committed.is_file():
        return committed
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lmfs" / "quality_model.ftz"
    if not cache.is_file():
        train_quality(cache)
    return cache


def _clean(text: str) -> str:
    return " ".join(text.split())


def _windows(text: str, size: int, rng: random.Random) -> list[str]:
    lines = [x for x in text.splitlines() if x.strip()]
    out = []
    for i in range(0, len(lines), size):
        chunk = " ".join(lines[i : i + rng.randint(max(2, size // 2), size)])
        if len(chunk.split()) >= 8:
            out.append(chunk)
    return out


def _gutenberg_samples(path: Path, books: slice, max_bytes: int, rng: random.Random, limit: int) -> list[str]:
    from lmfs.data.synth import _paragraphs

    with open(path, encoding="utf-8") as f:
        corpus = f.read(max_bytes)
    out = []
    for book in corpus.split("<|endoftext|>")[books]:
        paras = _paragraphs(book, 20)
        i = 0
        while i < len(paras):
            n = rng.randint(1, 4)
            out.append(" ".join(paras[i : i + n]))
            i += n
    rng.shuffle(out)
    return out[:limit]


def _junk_samples(seed: int, n_docs: int) -> list[str]:
    from lmfs.data.extract import extract_text_from_html_bytes
    from lmfs.data.synth import _documents, source_texts

    src = source_texts(slice(0, 2), max_bytes=1 << 20)
    out = []
    for _url, html, truth in _documents(n_docs, random.Random(seed), src):
        if truth["kind"] in ("spam", "boilerplate"):
            text = extract_text_from_html_bytes(html.encode()) or ""
            if text.strip():
                out.append(text)
    return out


_UI = ["Home", "About", "Contact", "Login", "Log in", "Sign up", "Register", "Cart", "Checkout", "Search", "Menu",
       "Privacy", "Terms", "Help", "FAQ", "Blog", "News", "Shop", "Account", "Wishlist", "Compare", "Next", "Prev",
       "More", "Share", "Tweet", "Like", "Reply", "Subscribe", "Newsletter", "Cookies", "Accept", "Sitemap"]


def _vocab(path: Path, books: slice, max_bytes: int) -> list[str]:
    with open(path, encoding="utf-8") as f:
        corpus = f.read(max_bytes)
    words = re.findall(r"[A-Za-z]{3,12}", " ".join(corpus.split("<|endoftext|>")[books]))
    return sorted(set(w.lower() for w in words))


def _crawl_junk(rng: random.Random, vocab: list[str], n: int) -> list[str]:
    """Raw-crawl-like low-quality text in six genres built from a vocabulary: menus, product listings,
    keyword spam, word salad, post metadata, tag clouds."""

    def w(k: int) -> list[str]:
        return [rng.choice(vocab) for _ in range(k)]

    out = []
    for i in range(n):
        genre = i % 6
        if genre == 0:
            items = rng.sample(_UI, rng.randint(5, 12)) + [x.title() for x in w(rng.randint(2, 8))]
            rng.shuffle(items)
            out.append(rng.choice([" | ", " ", "\n", " > ", " · "]).join(items))
        elif genre == 1:
            rows = []
            for _ in range(rng.randint(3, 10)):
                name = " ".join(x.title() for x in w(rng.randint(1, 3)))
                rows.append(f"{name} ${rng.randint(1, 999)}.{rng.randint(0, 99):02d} "
                            f"{rng.choice(['Add to cart', 'Buy now', 'In stock', 'Quick view', 'Sold out'])}")
            out.append(" ".join(rows))
        elif genre == 2:
            kw = " ".join(w(rng.randint(1, 2)))
            parts = [rng.choice([f"buy {kw}", f"cheap {kw}", f"best {kw} online", f"{kw} discount", f"{kw} sale",
                                 f"top {kw} 2020", "click here", "free shipping", f"{kw} {kw}"])
                     for _ in range(rng.randint(6, 20))]
            out.append(" ".join(parts))
        elif genre == 3:
            out.append(" ".join(w(rng.randint(10, 60))))
        elif genre == 4:
            out.append(" ".join(
                f"Posted by {rng.choice(['admin', 'editor', 'guest'])} on 20{rng.randint(10, 20)}-"
                f"{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} | {rng.randint(0, 99)} comments | "
                f"Tags: {', '.join(w(rng.randint(2, 5)))} Read more"
                for _ in range(rng.randint(1, 5))))
        else:
            out.append(" ".join(x.title() if rng.random() < 0.5 else x for x in w(rng.randint(8, 30)))
                       + f" ({rng.randint(1, 500)})")
    return out


def _cc_samples(rng: random.Random) -> tuple[list[str], list[str]]:
    """Line windows of the real CC pages: (train pages, held-out pages), split by page."""
    from lmfs.data.extract import extract_text_from_html_bytes
    from lmfs.data.readers import read_shard
    from lmfs.paths import shared_data

    pages = []
    for doc in read_shard(shared_data("web", "cc_sample_16pages.warc.gz"), lambda r, d: None):
        text = extract_text_from_html_bytes(doc.raw or b"") or ""
        if text.strip():
            pages.append(text)
    train, test = [], []
    for i, text in enumerate(pages):
        (train if i % 2 == 0 else test).extend(_windows(text, 12, rng))
    return train, test


def _write_fasttext(path: Path, samples: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for label, text in samples:
            f.write(f"__label__{label} {_clean(text)}\n")


def _evaluate(model: Any, samples: list[tuple[str, str]]) -> dict[str, Any]:
    tp = fp = fn = tn = 0
    for label, text in samples:
        [(pred, _p)] = predict(model, text, k=1)
        if pred == "wiki" and label == "wiki":
            tp += 1
        elif pred == "wiki":
            fp += 1
        elif label == "wiki":
            fn += 1
        else:
            tn += 1
    n = tp + fp + fn + tn
    return {
        "n": n,
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision_wiki": tp / (tp + fp) if tp + fp else 0.0,
        "recall_wiki": tp / (tp + fn) if tp + fn else 0.0,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def train_quality(out_path: str | os.PathLike, n_positive: int = 3000, seed: int = 0) -> dict[str, Any]:
    """Train, quantize and save the classifier to ``out_path`` (``.ftz``), write ``<out>.json`` with the
    held-out metrics, and return them."""
    import fasttext

    from lmfs.atomic import atomic_path, write_json_atomic
    from lmfs.paths import shared_data

    rng = random.Random(seed)
    pos_train = _gutenberg_samples(shared_data("corpus", "gutenberg_train.txt"), slice(0, 40), 12 << 20, rng,
                                   n_positive)
    cc_train, cc_test = _cc_samples(rng)
    gut_train, gut_valid = shared_data("corpus", "gutenberg_train.txt"), shared_data("corpus", "gutenberg_valid.txt")
    junk_train = _junk_samples(seed + 101, 1500) + _crawl_junk(rng, _vocab(gut_train, slice(0, 40), 12 << 20),
                                                              n_positive)
    neg_train = cc_train * 3 + junk_train
    pos_test = _gutenberg_samples(shared_data("corpus", "gutenberg_valid.txt"), slice(14, 20), 6 << 20, rng, 600)
    junk_test = _junk_samples(seed + 202, 600) + _crawl_junk(random.Random(seed + 303),
                                                             _vocab(gut_valid, slice(14, 20), 6 << 20), 600)
    train = [("wiki", t) for t in pos_train] + [("cc", t) for t in neg_train]
    rng.shuffle(train)
    out = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.txt"
        _write_fasttext(data, train)
        fasttext.FastText.eprint = lambda *a, **k: None
        model = fasttext.train_supervised(input=str(data), verbose=0, **TRAIN_PARAMS)
        model.quantize(input=str(data), retrain=True, cutoff=50_000, qnorm=True, verbose=0, thread=1)
        with atomic_path(out) as p:
            model.save_model(str(p))
    metrics = {
        "model": out.name,
        "params": TRAIN_PARAMS,
        "train": {"wiki": len(pos_train), "cc": len(neg_train), "cc_real_windows": len(cc_train)},
        "held_out": {
            "all": _evaluate(model, [("wiki", t) for t in pos_test] + [("cc", t) for t in junk_test + cc_test]),
            "real_cc_pages_only": _evaluate(model, [("cc", t) for t in cc_test]),
            "gutenberg_only": _evaluate(model, [("wiki", t) for t in pos_test]),
        },
        "positives": "Project Gutenberg prose (gutenberg_train.txt, first 40 books); held out: gutenberg_valid "
        "books 15-20",
        "negatives": "line windows of the real CC sample pages (even pages; odd ones held out) + synthetic "
        "spam/boilerplate pages (seed+101; held out seed+202) + crawl junk in six genres (menus, listings, "
        "keyword spam, word salad, post metadata, tag clouds) over the training books' vocabulary (held out: "
        "another seed over the held-out books' vocabulary)",
    }
    write_json_atomic(out.with_suffix(".json"), metrics)
    load_model.__globals__["_CACHE"].pop(os.fspath(out), None)
    return metrics


_TAG = re.compile(r"\s+")


def wiki_probability(text: str, model_path: str | os.PathLike | None = None) -> float:
    """Probability (0..1) that ``text`` is ``wiki`` quality."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    if not text.strip():
        return 0.0
    model = load_model(model_path or default_model_path())
    probs = dict(predict(model, _TAG.sub(" ", text), k=2))
    return probs.get("wiki", 0.0)


def classify_quality(text: str) -> tuple[str, float]:
    """``("wiki", p)`` when the probability of ``wiki`` is at least 0.5, else ``("cc", 1 - p)``."""
    p = wiki_probability(text)
    return ("wiki", p) if p >= 0.5 else ("cc", 1.0 - p)
