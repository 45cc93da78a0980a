"""Reading crawl shards: WARC and WET with FastWARC, JSONL (optionally gzipped) line by line.

Every reader yields :class:`~lmfs.data.document.Document` objects and reports what it could not read through a
``drop(reason, doc_or_none)`` callback instead of raising, so one damaged record never loses the shard:

* a WARC ``response`` becomes a document with ``raw`` = the HTTP payload (HTML bytes) and ``meta["charset"]``
  from the HTTP header; non-HTML responses are dropped as ``not_html``; a WET ``conversion`` record becomes a
  document with ``text`` already set; other record types (request, metadata, warcinfo) are skipped silently;
* a record whose declared ``Content-Length`` exceeds ``max_record_bytes`` is dropped as ``record_too_large``
  (without reading it);
* gzip input is read through a :class:`LimitedReader` that stops with :class:`InputTooLarge` once the
  decompressed size exceeds ``max_decompressed_bytes`` (a gzip bomb cannot fill memory or run for long);
* a truncated gzip member or WARC record ends the shard early: what was read is kept and one drop
  ``truncated_input`` is recorded;
* JSONL lines that are not JSON objects with a string ``text`` field are dropped as ``bad_json``; lines longer
  than ``max_record_bytes`` as ``record_too_large``.

Document ids are ``<shard name>/<record index>`` so they are stable across runs and executors.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from lmfs.data.document import Document

__all__ = ["InputTooLarge", "LimitedReader", "detect_format", "read_shard"]

DEFAULT_MAX_RECORD_BYTES = 16 << 20
DEFAULT_MAX_DECOMPRESSED_BYTES = 2 << 30

DropFn = Callable[[str, "Document | None"], None]


class InputTooLarge(ValueError):
    """Decompressed input beyond the configured limit (a gzip bomb or a mis-sized shard)."""


class LimitedReader(io.RawIOBase):
    """A read-only binary stream over ``inner`` that raises :class:`InputTooLarge` past ``limit`` bytes."""

    def __init__(self, inner: io.BufferedIOBase, limit: int, name: str) -> None:
        self.inner, self.limit, self.name, self.count = inner, limit, name, 0
        self.exceeded = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.count

    def seek(self, offset: int, whence: int = 0) -> int:
        """Only "where am I" (``seek(0, SEEK_CUR)`` or a seek to the current position): FastWARC asks."""
        if (whence == 1 and offset == 0) or (whence == 0 and offset == self.count):
            return self.count
        raise io.UnsupportedOperation(f"{self.name}: a decompressing stream cannot seek")

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self.inner.read(len(b))
        self.count += len(data)
        if self.count > self.limit:
            self.exceeded = True
            raise InputTooLarge(
                f"{self.name}: more than {self.limit} bytes after decompression (a gzip bomb or a huge shard); "
                "raise max_decompressed_bytes if this is intended"
            )
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def detect_format(path: str | os.PathLike) -> str:
    """``warc``, ``wet`` or ``jsonl`` from the file name (``.warc[.gz]``, ``.wet[.gz]``, ``.jsonl[.gz]``)."""
    name = Path(path).name.lower()
    for suffix in (".gz",):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith(".wet") or name.endswith(".warc.wet"):
        return "wet"
    if name.endswith(".warc") or name.endswith(".arc"):
        return "warc"
    if name.endswith(".jsonl") or name.endswith(".json"):
        return "jsonl"
    raise ValueError(f"{path}: cannot tell the input format from the name (want .warc, .wet or .jsonl, +.gz)")


def _open(path: Path, max_decompressed_bytes: int) -> LimitedReader:
    raw = open(path, "rb")
    if path.name.endswith(".gz"):
        return LimitedReader(gzip.GzipFile(fileobj=raw, mode="rb"), max_decompressed_bytes, str(path))
    return LimitedReader(raw, max_decompressed_bytes, str(path))


_TRUNCATION = (EOFError, zlib.error, gzip.BadGzipFile)


def read_shard(
    path: str | os.PathLike,
    drop: DropFn,
    *,
    fmt: str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> Iterator[Document]:
    """The documents of one input shard (see the module docstring for what is dropped and why)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input shard not found: {path}")
    fmt = fmt or detect_format(path)
    if fmt in ("warc", "wet"):
        yield from _read_warc(path, drop, max_record_bytes, max_decompressed_bytes)
    elif fmt == "jsonl":
        yield from _read_jsonl(path, drop, max_record_bytes, max_decompressed_bytes)
    else:
        raise ValueError(f"{path}: unknown input format {fmt!r} (warc, wet or jsonl)")


def _read_warc(path: Path, drop: DropFn, max_record: int, max_total: int) -> Iterator[Document]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    wanted = WarcRecordType.response | WarcRecordType.conversion | WarcRecordType.resource
    stream = _open(path, max_total)
    index = 0
    try:
        it = iter(
            ArchiveIterator(stream, record_types=wanted, parse_http=True, stream_detect=False, fsspec_args=False)
        )
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except (OSError, *_TRUNCATION) as e:
                if stream.exceeded:
                    raise InputTooLarge(
                        f"{path}: more than {max_total} bytes after decompression (a gzip bomb or a huge "
                        "shard); raise max_decompressed_bytes if this is intended"
                    ) from e
                drop("truncated_input", None)
                break
            doc_id = f"{path.name}/{index}"
            index += 1
            url = rec.headers.get("WARC-Target-URI") or ""
            if rec.content_length > max_record:
                drop("record_too_large", Document(id=doc_id, url=url, text=""))
                continue
            try:
                payload = rec.reader.read()
            except (OSError, *_TRUNCATION):
                if stream.exceeded:
                    raise InputTooLarge(f"{path}: more than {max_total} bytes after decompression") from None
                drop("truncated_input", Document(id=doc_id, url=url, text=""))
                break
            if rec.record_type == WarcRecordType.conversion:
                text = payload.decode("utf-8", errors="replace")
                yield Document(id=doc_id, url=url, text=text, meta={"source": "wet"})
                continue
            if rec.is_http:
                ctype = (rec.http_content_type or "").lower()
                if ctype and "html" not in ctype and "text" not in ctype:
                    drop("not_html", Document(id=doc_id, url=url, text=""))
                    continue
            meta = {"source": "warc"}
            if rec.is_http and rec.http_charset:
                meta["charset"] = rec.http_charset
            yield Document(id=doc_id, url=url, text="", raw=bytes(payload), meta=meta)
    finally:
        stream.close()


def _read_jsonl(path: Path, drop: DropFn, max_record: int, max_total: int) -> Iterator[Document]:
    stream = io.BufferedReader(_open(path, max_total), buffer_size=1 << 16)
    try:
        index = 0
        while True:
            try:
                line = stream.readline(max_record + 1)
            except _TRUNCATION:
                drop("truncated_input", None)
                break
            if not line:
                break
            doc_id = f"{path.name}/{index}"
            index += 1
            if len(line) > max_record and not line.endswith(b"\n"):
                # skip the rest of the over-long line
                try:
                    while (chunk := stream.readline(1 << 20)) and not chunk.endswith(b"\n"):
                        pass
                except _TRUNCATION:
                    drop("truncated_input", None)
                    break
                drop("record_too_large", Document(id=doc_id, text=""))
                continue
            if not line.strip():
                index -= 1
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                drop("bad_json", Document(id=doc_id, text=""))
                continue
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                drop("bad_json", Document(id=doc_id, text=""))
                continue
            meta = {k: v for k, v in obj.items() if k not in ("text", "id", "url")}
            yield Document(
                id=str(obj.get("id") or doc_id), url=str(obj.get("url") or ""), text=obj["text"], meta=meta
            )
    finally:
        stream.close()
