"""The pipeline's steps: small objects with one signature, ``step(docs, stats) -> docs``.

A step takes an iterator of :class:`~lmfs.data.document.Document` and the :class:`StepStats` of this step on
this shard, and yields the documents it keeps (possibly changed). A document it removes goes to
``stats.drop(doc, reason)``. Steps are built from the ``[[steps]]`` tables of a pipeline config by
:func:`build_step` (``type`` names the class in :data:`STEP_TYPES`; the other keys are its parameters).

Global steps (:class:`GlobalStep`: exact-line dedup, MinHash near-dedup) need every shard before they can
decide: the executor runs their ``collect`` on each shard (which writes a small partial file: line-hash counts,
signatures), then one ``combine`` over all partials (which writes the global decision), then ``apply`` per shard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lmfs.data.document import Document

__all__ = ["STEP_TYPES", "GlobalStep", "Step", "StepStats", "build_step"]

EXAMPLES_PER_REASON = 3
SNIPPET_CHARS = 300


def doc_bytes(doc: Document) -> int:
    if doc.text:
        return len(doc.text.encode("utf-8", errors="replace"))
    return len(doc.raw or b"")


@dataclass
class StepStats:
    """Counts of one step on one shard: documents and bytes in and out, drops by reason, a few examples, and
    the ids of dropped documents (for precision/recall against a ground truth)."""

    name: str
    in_docs: int = 0
    in_bytes: int = 0
    out_docs: int = 0
    out_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    dropped_ids: dict[str, list[str]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def drop(self, doc: Document | None, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if doc is None:
            return
        self.dropped_ids.setdefault(reason, []).append(doc.id)
        ex = self.examples.setdefault(reason, [])
        if len(ex) < EXAMPLES_PER_REASON:
            text = doc.text or (doc.raw or b"")[:SNIPPET_CHARS].decode("utf-8", "replace")
            ex.append({"id": doc.id, "url": doc.url, "text": text[:SNIPPET_CHARS]})

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def merge(cls, name: str, parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
        out = cls(name).to_json()
        for p in parts:
            for k in ("in_docs", "in_bytes", "out_docs", "out_bytes"):
                out[k] += p[k]
            for k in ("dropped", "counters"):
                for r, n in p[k].items():
                    out[k][r] = out[k].get(r, 0) + n
            for r, ex in p["examples"].items():
                lst = out["examples"].setdefault(r, [])
                lst.extend(ex[: EXAMPLES_PER_REASON - len(lst)])
            for r, ids in p["dropped_ids"].items():
                out["dropped_ids"].setdefault(r, []).extend(ids)
        return out


def counted(docs: Iterable[Document], stats: StepStats, side: str) -> Iterator[Document]:
    """Pass ``docs`` through, adding them to ``stats``' ``in`` or ``out`` counts."""
    for d in docs:
        if side == "in":
            stats.in_docs += 1
            stats.in_bytes += doc_bytes(d)
        else:
            stats.out_docs += 1
            stats.out_bytes += doc_bytes(d)
        yield d


class Step:
    """A pipeline step. Subclasses set ``type`` and implement ``__call__`` (or ``keep`` for a filter)."""

    type: ClassVar[str] = ""

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults())
        if unknown:
            raise ValueError(f"step {self.type!r}: unknown parameter(s) {sorted(unknown)}")
        self.params = {**self.defaults(), **params}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {}

    @property
    def name(self) -> str:
        return self.params.get("name") or self.type

    def __call__(self, docs: Iterable[Document], stats: StepStats) -> Iterator[Document]:
        for doc in docs:
            reason = self.keep(doc, stats)
            if reason is None:
                yield doc
            else:
                stats.drop(doc, reason)

    def keep(self, doc: Document, stats: StepStats) -> str | None:
        """None to keep ``doc``, else the reason to drop it."""
        raise NotImplementedError


class GlobalStep(Step):
    """A step that needs all shards: ``collect`` per shard -> ``combine`` once -> ``apply`` per shard."""

    def collect(self, docs: Iterable[Document], partial_path: Path) -> Iterator[Document]:
        raise NotImplementedError

    def combine(self, partial_paths: list[Path], state_path: Path) -> dict[str, Any]:
        raise NotImplementedError

    def apply(self, docs: Iterable[Document], stats: StepStats, state_path: Path) -> Iterator[Document]:
        raise NotImplementedError


# ----------------------------------------------------------------------------------------------- map steps


class Extract(Step):
    """Raw HTML bytes -> text (Resiliparse). Drops ``binary`` payloads and pages with ``no_text``; documents that
    already have text (WET, JSONL) pass unchanged. ``max_html_bytes`` caps what is parsed (``too_large``)."""

    type = "extract"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"name": None, "max_html_bytes": 8 << 20}

    def keep(self, doc: Document, stats: StepStats) -> str | None:
        from lmfs.data.extract import extract_text_from_html_bytes

        if doc.raw is None:
            return None if doc.text.strip() else "empty"
        raw, doc.raw = doc.raw, None
        if len(raw) > self.params["max_html_bytes"]:
            return "too_large"
        try:
            text = extract_text_from_html_bytes(raw)
        except Exception as e:  # a page the extractor cannot handle is one counted drop, not a lost shard
            stats.count(f"extract_error:{type(e).__name__}")
            return "extract_error"
        if text is None:
            return "binary"
        if not text.strip():
            return "no_text"
        doc.text = text
        return None


class Language(Step):
    """fastText lid.176: keep documents whose top language is in ``languages`` with score >= ``min_score``."""

    type = "language"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"name": None, "languages": ["en"], "min_score": 0.65}

    def keep(self, doc: Document, stats: StepStats) -> str | None:
        from lmfs.data.langid import identify_language

        lang, score = identify_language(doc.text)
        doc.meta["lang"], doc.meta["lang_score"] = lang, round(score, 4)
        if lang not in self.params["languages"]:
            return f"lang:{lang}" if lang in ("unknown",) else "other_language"
        if score < self.params["min_score"]:
            return "low_language_score"
        return None


class MaskPII(Step):
    """Replace emails, phone numbers and IPv4 addresses by placeholders; counts go to the document's meta and
    to the step's counters. Drops nothing."""

    type = "pii"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"name": None, "emails": True, "phones": True, "ips": True}

    def keep(self, doc: Document, stats: StepStats) -> str | None:
        from lmfs.data.pii import mask_emails, mask_ips, mask_phone_numbers

        text = doc.text
        for key, fn in (("emails", mask_emails), ("phones", mask_phone_numbers), ("ips", mask_ips)):
            if self.params[key]:
                text, n = fn(text)
                if n:
                    doc.meta[f"pii_{key}"] = n
                    stats.count(f"masked_{key}", n)
        doc.text = text
        return None


class Harmful(Step):
    """Drop documents in which some line is offensive (NSFW / toxic) with probability >= ``threshold``. The
    default, 0.99, is high on purpose: per line, the shipped model gives archaic prose ("the Ass and the Wolf",
    "silly") up to ~0.98 and explicit abuse > 0.999; on the synthetic crawl 0.5 dropped 20 clean pages."""

    type = "harmful"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"name": None, "threshold": 0.99}

    def keep(self, doc: Document, stats: StepStats) -> str | None:
        from lmfs.data.harmful import offensive_probability

        p = offensive_probability(doc.text)
        doc.meta["offensive"] = round(p, 4)
        return "nsfw_or_toxic" if p >= self.params["threshold"] else None


class Gopher(Step):
    """The Gopher quality rules; the reason names the first rule that fails."""

    type = "gopher"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"name": None}

    def keep(self, doc: Document, stats: StepStats) -> str | None:
        from lmfs.data.gopher import gopher_failure

        return gopher_failure(doc.text)


class Quality(Step):
    """The fastText quality classifier: drop documents whose probability of ``wiki`` is below ``threshold``."""

    type = "quality"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"name": None, "threshold": 0.5, "model": None}

    def keep(self, doc: Document, stats: StepStats) -> str | None:
        from lmfs.data.quality import wiki_probability

        p = wiki_probability(doc.text, self.params["model"])
        doc.meta["quality"] = round(p, 4)
        return "low_quality" if p < self.params["threshold"] else None


class MinLength(Step):
    """Drop documents with fewer than ``min_chars`` characters left (e.g. after line dedup)."""

    type = "min_length"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"name": None, "min_chars": 1}

    def keep(self, doc: Document, stats: StepStats) -> str | None:
        return "too_short" if len(doc.text.strip()) < self.params["min_chars"] else None


# ----------------------------------------------------------------------------------------------- global steps


def _lines(text: str) -> list[str]:
    return text.split("\n")


class ExactLineDedup(GlobalStep):
    """Remove every line that occurs more than once in the whole corpus (64-bit BLAKE2b line keys; blank lines
    are kept as layout and not counted). A document left with no text is dropped as ``all_lines_duplicated``."""

    type = "line_dedup"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"name": None}

    def collect(self, docs: Iterable[Document], partial_path: Path) -> Iterator[Document]:
        from lmfs.data.dedup import line_hashes

        chunks: list[np.ndarray] = []
        for doc in docs:
            lines = [x for x in _lines(doc.text) if x.strip()]
            chunks.append(line_hashes(lines))
            yield doc
        allh = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint64)
        keys, counts = np.unique(allh, return_counts=True)
        _save_npz(partial_path, keys=keys, counts=counts.astype(np.int64))

    def combine(self, partial_paths: list[Path], state_path: Path) -> dict[str, Any]:
        keys_l, counts_l = [], []
        for p in partial_paths:
            with np.load(p) as z:
                keys_l.append(z["keys"])
                counts_l.append(z["counts"])
        keys = np.concatenate(keys_l) if keys_l else np.zeros(0, dtype=np.uint64)
        counts = np.concatenate(counts_l) if counts_l else np.zeros(0, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        keys, counts = keys[order], counts[order]
        uniq, start = np.unique(keys, return_index=True)
        totals = np.add.reduceat(counts, start) if keys.size else np.zeros(0, dtype=np.int64)
        dups = uniq[totals > 1]
        _save_npz(state_path, dups=dups)
        return {"distinct_lines": int(uniq.size), "duplicated_lines": int(dups.size)}

    def apply(self, docs: Iterable[Document], stats: StepStats, state_path: Path) -> Iterator[Document]:
        from lmfs.data.dedup import line_hashes

        with np.load(state_path) as z:
            dups = z["dups"]
        for doc in docs:
            lines = _lines(doc.text)
            h = line_hashes(lines)
            if dups.size:
                pos = np.searchsorted(dups, h).clip(0, dups.size - 1)
                is_dup = (dups[pos] == h) & np.array([bool(x.strip()) for x in lines], dtype=bool)
            else:
                is_dup = np.zeros(len(lines), dtype=bool)
            removed = int(is_dup.sum())
            if removed:
                stats.count("lines_removed", removed)
                kept = [x for x, d in zip(lines, is_dup, strict=True) if not d]
                doc.text = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip("\n")
                doc.meta["dup_lines_removed"] = removed
            if not doc.text.strip():
                stats.drop(doc, "all_lines_duplicated")
                continue
            yield doc


class MinHashDedup(GlobalStep):
    """Near-duplicate removal across all shards: MinHash signatures per shard, one LSH + exact-Jaccard
    clustering over all of them, the first document of each cluster (in shard order) kept."""

    type = "minhash"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"name": None, "num_hashes": 128, "num_bands": 16, "ngrams": 5, "jaccard_threshold": 0.8}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        from lmfs.data.dedup import _check_params

        p = self.params
        _check_params(p["num_hashes"], p["num_bands"], p["ngrams"], p["jaccard_threshold"])

    def collect(self, docs: Iterable[Document], partial_path: Path) -> Iterator[Document]:
        from lmfs.data.dedup import MinHasher

        texts, ids = [], []
        for doc in docs:
            texts.append(doc.text)
            ids.append(doc.id)
            yield doc
        sigs, grams, offsets = MinHasher(self.params["num_hashes"], self.params["ngrams"]).signatures(texts)
        _save_npz(partial_path, sigs=sigs, grams=grams, offsets=offsets, ids=np.array(ids, dtype=object))

    def combine(self, partial_paths: list[Path], state_path: Path) -> dict[str, Any]:
        from lmfs.data.dedup import lsh_clusters

        sigs_l, grams_l, offs_l, ids_l, shard_of = [], [], [], [], []
        base = 0
        for k, p in enumerate(partial_paths):
            with np.load(p, allow_pickle=True) as z:
                sigs_l.append(z["sigs"])
                grams_l.append(z["grams"])
                offs_l.append(z["offsets"][:-1] + base if z["offsets"].size > 1 else z["offsets"][:0])
                base += int(z["offsets"][-1]) if z["offsets"].size else 0
                ids_l.extend(z["ids"].tolist())
                shard_of.extend([k] * z["sigs"].shape[0])
        h = self.params["num_hashes"]
        sigs = np.concatenate(sigs_l) if sigs_l else np.zeros((0, h), dtype=np.uint64)
        grams = np.concatenate(grams_l) if grams_l else np.zeros(0, dtype=np.uint64)
        offsets = np.concatenate([*offs_l, [base]]).astype(np.int64)
        roots = lsh_clusters(sigs, grams, offsets, self.params["num_bands"], self.params["jaccard_threshold"])
        drop = np.flatnonzero(roots != np.arange(roots.size))
        dropped = {ids_l[i]: ids_l[roots[i]] for i in drop.tolist()}
        _save_npz(
            state_path,
            ids=np.array(sorted(dropped), dtype=object),
            kept=np.array([dropped[i] for i in sorted(dropped)], dtype=object),
        )
        return {"documents": int(roots.size), "near_duplicates": len(dropped)}

    def apply(self, docs: Iterable[Document], stats: StepStats, state_path: Path) -> Iterator[Document]:
        with np.load(state_path, allow_pickle=True) as z:
            dup_of = dict(zip(z["ids"].tolist(), z["kept"].tolist(), strict=True))
        for doc in docs:
            if doc.id in dup_of:
                doc.meta["duplicate_of"] = dup_of[doc.id]
                stats.drop(doc, "near_duplicate")
                continue
            yield doc


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    from lmfs.atomic import atomic_open

    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


STEP_TYPES: dict[str, type[Step]] = {
    cls.type: cls
    for cls in (Extract, Language, MaskPII, Harmful, Gopher, Quality, MinLength, ExactLineDedup, MinHashDedup)
}


def build_step(spec: dict[str, Any]) -> Step:
    """A step from its config table: ``{"type": "language", "languages": ["en"], ...}``."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"a step needs a 'type' (one of {sorted(STEP_TYPES)}), got {spec!r}")
    params = dict(spec)
    kind = params.pop("type")
    cls = STEP_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown step type {kind!r}; known: {', '.join(sorted(STEP_TYPES))}")
    return cls(**params)
