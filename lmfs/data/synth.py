"""A synthetic Common Crawl with ground truth, for measuring the pipeline step by step.

:func:`generate_crawl` writes ``num_docs`` HTML pages as WARC ``response`` records into ``num_shards`` gzipped
WARC files (one gzip member per record, fixed dates and record ids: the same seed gives the same bytes) and a
``truth.jsonl`` with one line per page: its id (``<shard>/<index>``, the pipeline's document id), ``kind`` and
what should happen to it. Pages are built from the shared texts:

* ``clean`` — 3–8 paragraphs of a Project Gutenberg book (English prose) inside a site template (navigation,
  a cookie notice, a footer: the same lines on every page of a site, for exact-line dedup to remove);
  a fifth of them get PII (e-mail addresses, US phone numbers, IPv4 addresses; counts in the truth);
* ``exact_dup`` — a clean page again under another URL; ``near_dup`` — a clean page with ~1% of its words
  replaced, another date line (5-gram Jaccard well above 0.8): both should go in MinHash near-dedup;
* ``non_english`` — German paragraphs (``../shared/data/text/german.txt``) or Cyrillic / Chinese lines from the
  real Common Crawl sample: the language filter should drop them;
* ``boilerplate`` — a page of navigation, menus and notices only; ``spam`` — keyword-stuffed SEO text;
  ``empty`` — a page without visible text: the Gopher rules / quality filter / extractor should drop them;
* ``toxic`` — a clean page with an offensive comment section: the harmful-content filter should drop it.

``truth.jsonl`` records ``expected`` (``keep`` / ``drop``) and ``target`` (the step meant to drop it:
``extract``, ``language``, ``harmful``, ``gopher+quality``, ``minhash``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfs.atomic import atomic_open

__all__ = ["generate_crawl", "load_truth", "source_texts"]

KIND_WEIGHTS = {
    "clean": 0.47,
    "exact_dup": 0.08,
    "near_dup": 0.08,
    "non_english": 0.10,
    "boilerplate": 0.08,
    "spam": 0.08,
    "toxic": 0.06,
    "empty": 0.05,
}
TARGET = {
    "clean": None,
    "exact_dup": "minhash",
    "near_dup": "minhash",
    "non_english": "language",
    "boilerplate": "gopher+quality",
    "spam": "gopher+quality",
    "toxic": "harmful",
    "empty": "extract",
}

_SITES = ["riverbank-review", "oldmill-press", "harbor-notes", "quietlibrary", "greenfield-journal",
          "northwind-daily", "lanternhouse", "copperleaf-stories"]
_NAV = ["Home", "About us", "Archive", "Categories", "Contact", "Subscribe", "Log in", "Search", "Newsletter",
        "Privacy policy", "Terms of use", "Advertise", "Shop", "Events", "Help"]
_NOTICES = [
    "We use cookies to improve your experience. By continuing you accept our cookie policy.",
    "Sign up for our newsletter and never miss a story.",
    "All rights reserved. Reproduction without permission is prohibited.",
    "Follow us on social media for daily updates.",
    "This site is protected by reCAPTCHA and the Privacy Policy and Terms of Service apply.",
]
_SPAM_PRODUCTS = ["cheap watches", "replica bags", "casino bonus", "diet pills", "payday loans", "crypto signals",
                  "cheap flights", "free followers", "viagra online", "essay writing service"]
_SPAM_TEMPLATES = [
    "Buy {p} online best {p} price {p} discount {p} sale",
    "Best {p} 2020 top {p} deals click here {p} now",
    "{p} {p} {p} cheap cheap cheap order today free shipping",
    "Get {p} fast lowest price guaranteed {p} online shop",
    "Click here for more {p}...",
]
_OFFENSIVE = [
    "You are a stupid idiot and nobody cares what you think, shut up.",
    "What a moron, this is the dumbest garbage I have ever read, you pathetic loser.",
    "Go to hell, you worthless piece of crap.",
    "Shut the fuck up, you ignorant fool.",
    "This author is a disgusting bastard and an idiot.",
    "F**k you and your stupid article, asshole.",
]
_FILLER = ["indeed", "perhaps", "quietly", "again", "certainly", "slowly", "often", "rather", "still", "soon"]


@dataclass
class _Sources:
    english: list[list[str]]  # books -> paragraphs
    german: list[str]
    foreign_lines: list[str]


def _paragraphs(text: str, min_words: int = 25) -> list[str]:
    out = []
    for block in re.split(r"\n\s*\n", text):
        para = " ".join(block.split())
        if len(para.split()) >= min_words and not para.isupper():
            out.append(para)
    return out


def source_texts(books: slice = slice(40, 140), max_bytes: int = 48 << 20) -> _Sources:
    """The texts the generator draws on (needs ``../shared``): English books of ``gutenberg_train.txt`` (the
    ``books`` slice; the quality classifier trains on the first 40); German sentences (``german.txt``) and Aragonese lines (the whirlwind WET page); the
    Cyrillic and Chinese lines, and those of the Dutch and Swiss-German pages, of the real Common Crawl
    sample."""
    from lmfs.data.extract import extract_text_from_html_bytes
    from lmfs.data.readers import read_shard
    from lmfs.paths import shared_data

    with open(shared_data("corpus", "gutenberg_train.txt"), encoding="utf-8") as f:
        corpus = f.read(max_bytes)
    english = [p for p in (_paragraphs(b) for b in corpus.split("<|endoftext|>")[books]) if len(p) >= 10]
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(shared_data("text", "german.txt").read_text("utf-8").split()))
    german = [" ".join(sentences[i : i + 3]) for i in range(len(sentences) - 2)]
    foreign: list[str] = []
    for doc in read_shard(shared_data("web", "cc_sample_16pages.warc.gz"), lambda r, d: None):
        text = extract_text_from_html_bytes(doc.raw or b"") or ""
        latin_site = any(t in doc.url for t in (".nl/", ".ch/"))  # Dutch and German pages of the sample
        for line in text.splitlines():
            line = line.strip()
            letters = [c for c in line if c.isalpha()]
            if len(line) < 12 or not letters:
                continue
            if sum(ord(c) > 0x400 for c in letters) > 0.8 * len(letters) or (latin_site and len(line.split()) >= 6):
                foreign.append(line)
    for doc in read_shard(shared_data("web", "whirlwind.warc.wet.gz"), lambda r, d: None):  # Aragonese
        german.extend(line for line in doc.text.splitlines() if len(line.split()) >= 8)
    return _Sources(english, german, foreign)


def _page(site: str, title: str, date: str, paragraphs: list[str], comments: list[str] | None = None) -> str:
    nav = "".join(f'<li><a href="/{n.lower().replace(" ", "-")}">{n}</a></li>' for n in _NAV[:9])
    body = "".join(f"<p>{_esc(p)}</p>" for p in paragraphs)
    com = ""
    if comments:
        com = "<section class=comments><h2>Comments</h2>" + "".join(
            f"<div class=comment><b>guest{i}</b><p>{_esc(c)}</p></div>" for i, c in enumerate(comments)
        ) + "</section>"
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{_esc(title)} | {site}</title>'
        f"<script>window.dataLayer=[];function track(){{return 1;}}</script><style>body{{margin:0}}</style></head>"
        f"<body><header><div class=logo>{site}</div><nav><ul>{nav}</ul></nav></header>"
        f"<p class=notice>{_NOTICES[0]}</p>"
        f"<article><h1>{_esc(title)}</h1><p class=date>Published {date}</p>{body}</article>{com}"
        f"<footer><p>{_NOTICES[2]}</p><p>Copyright 2020 {site}. {_NOTICES[3]}</p></footer></body></html>"
    )


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _pii(rng: random.Random) -> tuple[str, dict[str, int]]:
    user = rng.choice(["john.smith", "mary_jones", "alex.k", "info", "support", "press.office"])
    email = f"{user}{rng.randint(1, 99)}@{rng.choice(['example.com', 'mail.example.org', 'riverbank.net'])}"
    phone = rng.choice(["({a}) {b}-{c}", "{a}-{b}-{c}", "{a}.{b}.{c}"]).format(
        a=rng.randint(201, 989), b=rng.randint(200, 999), c=f"{rng.randint(0, 9999):04d}"
    )
    ip = ".".join(str(rng.randint(1, 254)) for _ in range(4))
    sentence = f"For questions write to {email} or call {phone}; our server is at {ip} for mirrors."
    return sentence, {"emails": 1, "phones": 1, "ips": 1}


def _near_dup(paragraphs: list[str], rng: random.Random) -> list[str]:
    """About one word in a hundred of the whole page replaced (at least one)."""
    words = [p.split() for p in paragraphs]
    total = sum(map(len, words))
    for _ in range(max(1, total // 100)):
        k = rng.randrange(len(words))
        if words[k]:
            words[k][rng.randrange(len(words[k]))] = rng.choice(_FILLER)
    return [" ".join(w) for w in words]


def _warc_record(url: str, html: bytes, index: int, shard: str) -> bytes:
    rid = hashlib.sha1(f"{shard}/{index}".encode()).hexdigest()
    rid = f"{rid[:8]}-{rid[8:12]}-{rid[12:16]}-{rid[16:20]}-{rid[20:32]}"
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n\r\n" % len(html)
    block = http + html
    head = (
        "WARC/1.0\r\nWARC-Type: response\r\nWARC-Date: 2020-08-01T00:00:00Z\r\n"
        f"WARC-Record-ID: <urn:uuid:{rid}>\r\nWARC-Target-URI: {url}\r\n"
        f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(block)}\r\n\r\n"
    ).encode()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(head + block + b"\r\n\r\n")
    return buf.getvalue()


def _documents(num_docs: int, rng: random.Random, src: _Sources) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(url, html, truth) for each page, in crawl order."""
    kinds = list(KIND_WEIGHTS)
    weights = [KIND_WEIGHTS[k] for k in kinds]
    clean: list[tuple[int, list[str], str]] = []  # (index, paragraphs, title)
    book_pos = [0] * len(src.english)
    for i in range(num_docs):
        kind = rng.choices(kinds, weights)[0]
        if kind in ("exact_dup", "near_dup") and not clean:
            kind = "clean"
        site = rng.choice(_SITES)
        date = f"2020-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        url = f"https://{site}.example/{kind[:1]}{i:06d}.html"
        truth: dict[str, Any] = {"kind": kind, "url": url, "lang": "en", "pii": {}, "dup_of": None}
        if kind in ("clean", "toxic"):
            b = rng.randrange(len(src.english))
            paras = src.english[b]
            n = rng.randint(3, 8)
            start = book_pos[b] % max(1, len(paras) - n)
            book_pos[b] = start + n
            chosen = list(paras[start : start + n])
            title = " ".join(chosen[0].split()[:6])
            if kind == "clean" and rng.random() < 0.2:
                sentence, counts = _pii(rng)
                chosen.insert(rng.randrange(len(chosen) + 1), sentence)
                truth["pii"] = counts
            comments = rng.sample(_OFFENSIVE, 2) if kind == "toxic" else None
            html = _page(site, title, date, chosen, comments)
            if kind == "clean":
                clean.append((i, chosen, title))
        elif kind == "exact_dup":
            j, chosen, title = rng.choice(clean)
            html = _page(site, title, date, chosen)
            truth["dup_of"] = j
        elif kind == "near_dup":
            j, chosen, title = rng.choice(clean)
            html = _page(site, title, date, _near_dup(chosen, rng))
            truth["dup_of"] = j
        elif kind == "non_english":
            if rng.random() < 0.5 and src.german:
                chosen = rng.sample(src.german, min(len(src.german), rng.randint(3, 6)))
                truth["lang"] = "de/an"
            else:
                chosen = rng.sample(src.foreign_lines, min(len(src.foreign_lines), 20))
                truth["lang"] = "zh/ru/nl/de"
            html = _page(site, "Seite", date, chosen)
        elif kind == "boilerplate":
            items = rng.sample(_NAV, 8) + rng.sample(_NOTICES, 2)
            html = _page(site, rng.choice(_NAV), date, items)
        elif kind == "spam":
            p = rng.choice(_SPAM_PRODUCTS)
            lines = [rng.choice(_SPAM_TEMPLATES).format(p=p) for _ in range(rng.randint(12, 30))]
            html = _page(site, f"Best {p}", date, lines)
        else:  # empty
            html = f"<html><head><title>{site}</title><script>var a=1;</script></head><body></body></html>"
        truth["expected"] = "keep" if TARGET[kind] is None else "drop"
        truth["target"] = TARGET[kind]
        yield url, html, truth


def generate_crawl(
    out_dir: str | os.PathLike,
    num_docs: int = 1000,
    num_shards: int = 4,
    seed: int = 0,
    books: slice = slice(40, 140),
    sources: _Sources | None = None,
) -> list[Path]:
    """Write ``crawl-<k>.warc.gz`` shards and ``truth.jsonl`` into ``out_dir``; returns the shard paths."""
    if num_docs < 1 or num_shards < 1:
        raise ValueError(f"num_docs and num_shards must be positive, got {num_docs} and {num_shards}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    src = sources or source_texts(books)
    docs = list(_documents(num_docs, rng, src))
    per = -(-num_docs // num_shards)
    paths, truths = [], []
    ids: dict[int, str] = {}
    for k in range(num_shards):
        name = f"crawl-{k:05d}.warc.gz"
        path = out / name
        chunk = docs[k * per : (k + 1) * per]
        with atomic_open(path, "wb") as f:
            for j, (url, html, truth) in enumerate(chunk):
                f.write(_warc_record(url, html.encode("utf-8"), j, name))
                gid = k * per + j
                ids[gid] = f"{name}/{j}"
                truths.append({"id": ids[gid], **truth})
        paths.append(path)
    for t in truths:
        if t["dup_of"] is not None:
            t["dup_of"] = ids[t["dup_of"]]
    with atomic_open(out / "truth.jsonl", "w") as f:
        for t in truths:
            f.write(json.dumps(t, sort_keys=True) + "\n")
    return paths


def load_truth(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return {t["id"]: t for t in map(json.loads, f)}
