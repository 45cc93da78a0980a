"""A small reader of WARC / WET records (``.warc.gz``, ``.warc.wet.gz`` or uncompressed), stdlib only.

A WARC file is a sequence of records; Common Crawl gzips each record as its own gzip member, and
:func:`gzip.open` reads the members back to back as one stream. A record is::

    WARC/1.0\\r\\n
    Name: value\\r\\n          (named fields; ``Content-Length`` gives the size of the block)
    \\r\\n
    <Content-Length bytes of block>\\r\\n\\r\\n

For ``response`` records the block is an HTTP response (status line, headers, blank line, payload);
:meth:`WarcRecord.http` splits it. For WET ``conversion`` records the block is the extracted plain text.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

__all__ = ["HttpResponse", "WarcRecord", "iter_records", "read_records"]


@dataclass
class HttpResponse:
    status_line: str
    headers: dict[str, str]  # lower-cased names; a repeated name keeps its last value
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass
class WarcRecord:
    version: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    content: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @property
    def type(self) -> str:
        return self.headers.get("warc-type", "")

    @property
    def target_uri(self) -> str | None:
        return self.headers.get("warc-target-uri")

    @property
    def record_id(self) -> str | None:
        return self.headers.get("warc-record-id")

    def http(self) -> HttpResponse | None:
        """The HTTP message of a ``response`` / ``request`` record (``application/http``), else None.

        Common Crawl stores the payload already de-chunked and decompressed (the original encodings move to
        ``X-Crawler-*`` headers), so the body is returned as stored.
        """
        if not self.headers.get("content-type", "").startswith("application/http"):
            return None
        data = self.content
        cut, sep = data.find(b"\r\n\r\n"), 4
        if cut < 0:
            cut, sep = data.find(b"\n\n"), 2
        if cut < 0:
            cut, sep = len(data), 0
        head = data[:cut].decode("iso-8859-1").splitlines()
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        return HttpResponse(head[0] if head else "", headers, data[cut + sep :])


def _open(source: str | os.PathLike | BinaryIO) -> BinaryIO:
    if isinstance(source, (str, os.PathLike)):
        raw: BinaryIO = open(source, "rb")
    else:
        raw = source
    peek = raw.read(2)
    rest = io.BufferedReader(_Prepend(peek, raw))  # type: ignore[arg-type]
    return gzip.GzipFile(fileobj=rest) if peek == b"\x1f\x8b" else rest  # type: ignore[return-value]


class _Prepend(io.RawIOBase):
    """A raw stream that yields ``head`` and then the rest of ``stream`` (undoes a peek on any stream)."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self._head, self._stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._stream.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


def iter_records(source: str | os.PathLike | BinaryIO) -> Iterator[WarcRecord]:
    """Yield the records of a WARC / WET file (path or binary file object), gzipped or not, in order.

    Raises ``ValueError`` on a record that does not start with ``WARC/`` or is cut short.
    """
    stream = _open(source)
    try:
        while True:
            line = stream.readline()
            while line in (b"\r\n", b"\n"):  # the blank lines that end the previous record
                line = stream.readline()
            if not line:
                return
            version = line.strip().decode("ascii", "replace")
            if not version.startswith("WARC/"):
                raise ValueError(f"expected a WARC record header, got {line[:40]!r}")
            headers: dict[str, str] = {}
            last = None
            while True:
                line = stream.readline()
                if not line:
                    raise ValueError("WARC header cut short")
                if line in (b"\r\n", b"\n"):
                    break
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                if text[:1] in (" ", "\t") and last:  # a folded continuation line
                    headers[last] += " " + text.strip()
                    continue
                name, _, value = text.partition(":")
                last = name.strip().lower()
                headers[last] = value.strip()
            length = int(headers.get("content-length", "0"))
            content = stream.read(length)
            if len(content) != length:
                raise ValueError(f"WARC record cut short: {len(content)} of {length} bytes")
            yield WarcRecord(version, headers, content)
    finally:
        if isinstance(source, (str, os.PathLike)):
            stream.close()


def read_records(source: str | os.PathLike | BinaryIO) -> list[WarcRecord]:
    return list(iter_records(source))
