"""The unit of work of the data pipeline: one document with its text, its raw payload and metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Document"]


@dataclass
class Document:
    """``id`` is stable (``<shard>/<record index>`` or the input's own id); ``raw`` holds undecoded HTML bytes
    until the extraction step turns them into ``text``; ``meta`` collects what the steps learn (language,
    scores, PII counts) and is written out with the text."""

    id: str
    text: str
    url: str = ""
    raw: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "text": self.text, "meta": self.meta}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Document:
        return cls(id=obj["id"], url=obj.get("url", ""), text=obj["text"], meta=dict(obj.get("meta") or {}))
