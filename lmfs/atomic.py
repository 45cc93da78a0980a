"""Crash-safe file writes shared by every unit: a temp file in the same folder, fsync, then ``os.replace``.

A reader (or a process restarted after a crash) sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 1, default: Any = None) -> None:
    """``json.dumps(obj)`` to ``path`` atomically; ``default`` converts what json cannot (e.g. ``float``)."""
    write_text_atomic(path, json.dumps(obj, indent=indent, default=default) + "\n")


def append_jsonl_atomic(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Append records to a JSON-lines file by rewriting it atomically (small files only)."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    write_text_atomic(path, old + "".join(json.dumps(r) + "\n" for r in records))
