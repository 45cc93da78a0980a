"""Crash-safe file writes shared by every unit: a temp file in the same folder, fsync, then ``os.replace``.

A reader (or a process restarted after a crash) sees either the old file or the new one, never half of one.

* :func:`atomic_open` yields an open file (text or binary) for code that writes through a file object
  (``fh.write``, ``json.dump``, ``torch.save(obj, fh)``, ``np.save(fh, arr)``).
* :func:`atomic_path` yields the temp file's path for libraries that insist on a file name
  (``np.lib.format.open_memmap``, ``shutil.copyfile``).
* :func:`write_text_atomic`, :func:`write_json_atomic` and :func:`append_jsonl_atomic` are one-line uses of them.

The temp file is hidden and named after the target: ``.<name>.tmp-<random><suffix>`` (``<suffix>`` is the target's
own extension, so a library that appends one, as ``np.save`` appends ``.npy``, keeps the name it was given). It
lives beside the target, so ``os.replace`` never crosses a file system. A process killed mid-write leaves such a
temp file behind, never a torn target.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["append_jsonl_atomic", "atomic_open", "atomic_path", "write_json_atomic", "write_text_atomic"]


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (``os.umask`` sets it to read it,
    which races with other threads creating files)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; best effort (some platforms and file systems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "w",
    *,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Write ``path`` through a temp file beside it; the target changes only when the block succeeds.

    ``mode`` is ``"w"`` / ``"wt"`` (text; ``encoding`` defaults to UTF-8) or ``"wb"``. The parent folders are
    created. On success the file is closed, fsync'ed, given the permissions a plain ``open`` would give it
    (``0o666`` less the umask) and ``os.replace``'d over ``path``, and the folder is fsync'ed (best effort) — as
    :func:`atomic_path` does. On an exception the temp file is removed and ``path`` is left as it was.
    """
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    if mode == "wb" and (encoding, errors, newline) != (None, None, None):
        raise ValueError("binary mode takes no encoding, errors or newline argument")
    if mode != "wb" and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding, errors=errors, newline=newline) as fh:
        yield fh


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the path of an empty temp file beside ``path`` for a library that writes to a file name.

    The temp name ends with ``path``'s extension (``np.save`` would otherwise append ``.npy``). When the block
    succeeds the temp file is fsync'ed, given the usual permissions and ``os.replace``'d over ``path`` (then the
    folder is fsync'ed); on an exception it is removed and ``path`` is left as it was. The library must write the
    yielded path itself, not a file it derives from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync_path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (parent folders are created)."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


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
