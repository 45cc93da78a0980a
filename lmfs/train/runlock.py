"""One training per run folder: an exclusive lock on ``out_dir/.lmfs-train.lock`` while a run trains.

Two trainings into one ``out_dir`` would interleave checkpoints, metrics and summaries into a run that is neither.
:func:`run_lock` takes an exclusive ``flock`` on the lock file (the kernel drops it when the holder exits, even
by SIGKILL, so a dead run never blocks the next one) and records who holds it (pid, host, start time) for the
message a second training gets. Where the file system cannot ``flock``, the recorded pid decides: a live
holder refuses, a dead one's lock is taken over. The lock file is left in place after the run (removing it
would race with a process that has just opened it); an empty one means nobody holds it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

LOCK_NAME = ".lmfs-train.lock"


class RunLockedError(RuntimeError):
    """Another live training holds the run folder."""


def _holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        info = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike, say: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the run folder ``out_dir`` (created if missing) for the duration of the block.

    Raises :class:`RunLockedError` naming the holder when a live training has it. A lock left by a process that
    is no longer running is taken over, and ``say`` is told so."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"run folder {folder} is in use by another training ({_describe(_holder(fd))}); wait for it "
                "to finish or stop it, or train into another out_dir"
            ) from None
        except OSError as exc:  # no flock here (some network file systems): trust the recorded pid
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            info = _holder(fd)
            if info.get("host") == socket.gethostname() and _alive(info.get("pid")) and info.get("pid") != os.getpid():
                raise RunLockedError(
                    f"run folder {folder} is in use by another training ({_describe(info)}); wait for it to "
                    "finish or stop it, or train into another out_dir"
                ) from None
        previous = _holder(fd)
        if previous and say is not None:
            same_host = previous.get("host") == socket.gethostname()
            state = "no longer running" if same_host and not _alive(previous.get("pid")) else "not holding it"
            say(f"took over the lock of run folder {folder} left by {_describe(previous)} ({state})")
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode("utf-8"), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # released: an empty lock file means nobody holds the folder
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


__all__ = ["LOCK_NAME", "RunLockedError", "run_lock"]
