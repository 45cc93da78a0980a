"""Concurrency-safe store updates: an advisory lock (kept outside the repository) for read-modify-write. The
crash-safe writes themselves are :mod:`lmfs.atomic`'s."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["locked"]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock tied to ``path`` (the lock file lives in the temp folder, so the
    repository stays clean). Serializes read-merge-write updates of one file across processes."""
    key = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]
    lock_dir = Path(tempfile.gettempdir()) / "lmfs-locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{key}.lock", "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
