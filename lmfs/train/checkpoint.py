"""Checkpoints: model, optimizer, iteration, RNG states and run config in one file, written atomically.

A checkpoint file is a ``torch.save`` of a dict (loadable with ``weights_only=True``)::

    {"format": "lmfs-checkpoint", "version": 1, "iteration": int, "model": state_dict,
     "optimizer": state_dict | None, "rng": {...} | None, "config": dict | None, "extra": dict}

Atomic write: the bytes go to a hidden temp file beside the target, which is flushed and fsync'ed, then
``os.replace``'d over the target and the folder is fsync'ed. A crash at any moment leaves either the old
file or the new one, never a torn one. A save that fails for lack of space raises :class:`CheckpointError`
saying "disk full" and leaves the previous checkpoint untouched. Runs keep ``checkpoints/ckpt_<iteration>.pt``
files; :func:`latest_checkpoint` finds the newest complete one, :func:`newest_valid_checkpoint` the newest one
that verifies, :func:`find_checkpoint` the one a path names, and :func:`load_model` rebuilds the model a run
saved (from its config, nested or in the older flat layout).

Verification. A checkpoint is a zip archive whose every record (the pickle and each tensor's bytes) carries a
CRC-32 of its content; ``torch.load`` does not check them, so a flipped bit in tensor data would load silently.
:func:`verify_checkpoint` re-reads every record and compares the CRCs, and :func:`read_checkpoint` does so
before loading: a corrupted, truncated or empty file raises :class:`CheckpointError` naming the file (and the
damaged record). Resuming skips such files (moving them aside as ``<name>.corrupt``) and falls back to the
newest checkpoint that verifies, saying so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import shutil
import sys
import time
import zipfile
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
import torch

from lmfs.atomic import atomic_open

FORMAT = "lmfs-checkpoint"
VERSION = 1
CKPT_RE = re.compile(r"^ckpt_(\d+)\.pt$")
# Test hook: "ITER:SECONDS" makes the save of that iteration sleep after writing the temp file, before the
# rename, so a test can SIGKILL the process in the middle of a save.
SLEEP_HOOK_ENV = "LMFS_TEST_CKPT_SLEEP"

PathOrFile = str | os.PathLike | BinaryIO | IO[bytes]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not an lmfs checkpoint."""


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under a ``torch.compile`` wrapper (so state-dict keys carry no ``_orig_mod.`` prefix)."""
    return getattr(model, "_orig_mod", model)


# ----------------------------------------------------------------------------------------------- RNG states


def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """The states of python's, numpy's and torch's (CPU and CUDA) global RNGs, plus ``generator``'s."""
    np_state = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        # numpy's legacy tuple with its key array as a tensor, so the file loads with weights_only=True
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state() if generator is not None else None,
    }
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])


# ----------------------------------------------------------------------------------------------- save / load


def _sleep_hook(iteration: int) -> None:
    spec = os.environ.get(SLEEP_HOOK_ENV)
    if not spec:
        return
    it, _, seconds = spec.partition(":")
    if int(it) == iteration:
        time.sleep(float(seconds or 60))


def _is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it wraps, as torch's zip writer wraps the OSError) is ENOSPC / EDQUOT."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return True
        if "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def atomic_torch_save(obj: Any, path: str | os.PathLike, before_replace: Any = None) -> None:
    """``torch.save(obj)`` to ``path`` atomically (:func:`lmfs.atomic.atomic_open`: temp file + fsync +
    os.replace + fsync of the folder). ``before_replace`` runs once the temp file is complete and fsync'ed.

    A write that fails for lack of space raises :class:`CheckpointError` saying "disk full"; ``path`` keeps its
    previous content and the temp file is removed."""
    try:
        with atomic_open(path, "wb") as fh:
            torch.save(obj, fh)
            if before_replace is not None:
                fh.flush()
                os.fsync(fh.fileno())
                before_replace()
    except (OSError, RuntimeError) as exc:
        if not _is_disk_full(exc):
            raise
        folder = Path(path).parent
        try:
            free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
        except OSError:
            free = "free space unknown"
        raise CheckpointError(
            f"cannot save checkpoint {path}: disk full (no space left on device in {folder}, {free}); "
            "nothing was replaced, the previous checkpoint is still the newest. Free some space (or lower "
            "keep_checkpoints) and run again to resume"
        ) from None


def save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    iteration: int,
    out: PathOrFile,
    *,
    config: dict[str, Any] | None = None,
    generator: torch.Generator | None = None,
    save_rng: bool = True,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write model + optimizer state, ``iteration``, RNG states and ``config`` to ``out``.

    ``out`` is a path (written atomically) or a binary file object (written in place).
    ``extra`` holds small plain values (e.g. elapsed wall time) returned by :func:`read_checkpoint`.
    """
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "iteration": int(iteration),
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": capture_rng_state(generator) if save_rng else None,
        "config": config,
        "extra": dict(extra or {}),
    }
    if isinstance(out, (str, os.PathLike)):
        atomic_torch_save(payload, out, before_replace=lambda: _sleep_hook(int(iteration)))
    else:
        torch.save(payload, out)


def verify_checkpoint(src: PathOrFile) -> None:
    """Check that ``src`` is a complete zip archive whose every record matches its stored CRC-32.

    Raises :class:`CheckpointError` naming the file: empty, truncated, not a zip archive, or a record (e.g.
    ``data/3``, a tensor's bytes) whose content does not match its checksum. A file object is read from its
    current position and left there."""
    name = str(src) if isinstance(src, (str, os.PathLike)) else getattr(src, "name", "<file object>")
    if isinstance(src, (str, os.PathLike)):
        if not Path(src).is_file():
            raise CheckpointError(f"checkpoint not found: {src}")
        if Path(src).stat().st_size == 0:
            raise CheckpointError(f"checkpoint {name} fails verification: the file is empty")
    start = None if isinstance(src, (str, os.PathLike)) else src.tell()
    try:
        with zipfile.ZipFile(src) as archive:  # type: ignore[arg-type]
            for info in archive.infolist():
                try:
                    with archive.open(info) as fh:
                        while fh.read(1 << 22):  # zipfile checks the CRC-32 when the record is read to its end
                            pass
                except zipfile.BadZipFile as exc:
                    raise CheckpointError(
                        f"checkpoint {name} fails verification: record {info.filename} is corrupted ({exc})"
                    ) from None
                except (EOFError, OSError, ValueError) as exc:
                    raise CheckpointError(
                        f"checkpoint {name} fails verification: record {info.filename} is truncated ({exc})"
                    ) from None
    except zipfile.BadZipFile as exc:
        raise CheckpointError(
            f"checkpoint {name} fails verification: not a complete checkpoint archive (truncated or "
            f"overwritten?): {exc}"
        ) from None
    finally:
        if start is not None:
            src.seek(start)


def read_checkpoint(
    src: PathOrFile, map_location: str | torch.device = "cpu", *, verify: bool = True
) -> dict[str, Any]:
    """Load a checkpoint's payload dict (see the module docstring), after :func:`verify_checkpoint` (unless
    ``verify`` is False). Raises CheckpointError when unreadable or when verification fails."""
    name = str(src) if isinstance(src, (str, os.PathLike)) else getattr(src, "name", "<file object>")
    if isinstance(src, (str, os.PathLike)) and not Path(src).is_file():
        raise CheckpointError(f"checkpoint not found: {src}")
    if verify:
        verify_checkpoint(src)
    try:
        payload = torch.load(src, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {name}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not an lmfs checkpoint (no 'format': {FORMAT!r} entry)")
    return payload


def load_checkpoint(
    src: PathOrFile,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    generator: torch.Generator | None = None,
    restore_rng: bool = False,
    map_location: str | torch.device = "cpu",
) -> int:
    """Restore ``model`` (and ``optimizer``, and with ``restore_rng`` the RNG states and ``generator``) from
    ``src``; returns the saved iteration."""
    payload = read_checkpoint(src, map_location=map_location)
    _unwrap(model).load_state_dict(payload["model"])
    if optimizer is not None:
        if payload.get("optimizer") is None:
            raise CheckpointError(f"checkpoint {src} holds no optimizer state")
        optimizer.load_state_dict(payload["optimizer"])
    if restore_rng and payload.get("rng") is not None:
        restore_rng_state(payload["rng"], generator)
    return int(payload["iteration"])


# ----------------------------------------------------------------------------------------------- discovery


def checkpoint_path(folder: str | os.PathLike, iteration: int) -> Path:
    return Path(folder) / f"ckpt_{iteration:08d}.pt"


def list_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``folder`` as (iteration, path), oldest first (temp files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CKPT_RE.match(p.name))]
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``folder`` (by name; not verified), or None."""
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def _say(message: str) -> None:
    print(f"lmfs: warning: {message}", file=sys.stderr, flush=True)


def newest_valid_checkpoint(
    folder: str | os.PathLike,
    *,
    map_location: str | torch.device = "cpu",
    quarantine: bool = False,
    say: Any = _say,
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in ``folder`` that verifies, with its payload; None when there is none.

    Each newer one that fails verification is reported through ``say`` by name (and with ``quarantine``
    renamed to ``<name>.corrupt``, so later runs neither count nor prune it); falling back to an older one
    is reported too."""
    skipped: list[Path] = []
    for _, path in reversed(list_checkpoints(folder)):
        try:
            payload = read_checkpoint(path, map_location=map_location)
        except CheckpointError as exc:
            skipped.append(path)
            note = ""
            if quarantine:
                bad = path.with_name(path.name + ".corrupt")
                with contextlib.suppress(OSError):
                    path.replace(bad)
                    note = f"; moved aside as {bad.name}"
            say(f"{exc}{note}")
            continue
        if skipped:
            say(
                f"falling back to {path} (step {int(payload['iteration'])}), the newest checkpoint that "
                f"verifies; skipped {', '.join(p.name for p in skipped)}"
            )
        return path, payload
    if skipped:
        say(f"no checkpoint in {folder} verifies ({', '.join(p.name for p in skipped)})")
    return None


def prune_checkpoints(folder: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (keep <= 0 keeps everything)."""
    if keep <= 0:
        return
    for _, p in list_checkpoints(folder)[:-keep]:
        p.unlink(missing_ok=True)


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete temp files left by a save that was killed before its rename; returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.name.startswith(".ckpt_") and ".tmp-" in p.name]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def find_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` itself when it is a file; for a run folder (or its ``checkpoints/``), the newest checkpoint that
    verifies (newer ones that do not are reported on stderr)."""
    p = Path(path)
    if p.is_file():
        return p
    for folder in (p / "checkpoints", p):
        if latest_checkpoint(folder) is None:
            continue
        found = newest_valid_checkpoint(folder)
        if found is None:
            raise CheckpointError(f"no checkpoint in {folder} verifies: every one is corrupted or truncated")
        return found[0]
    raise FileNotFoundError(
        f"no checkpoint at {p}: pass a checkpoint file or a run folder with checkpoints/ckpt_*.pt"
    )


def load_model(
    checkpoint: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the TransformerLM a training run saved and load its weights.

    ``checkpoint``: a checkpoint file or a run folder (its newest checkpoint). Returns ``(model in eval mode,
    the run's config dict in the nested layout)`` (see :func:`lmfs.train.config.nested_config`; checkpoints
    written with the older flat config load too).
    """
    from lmfs.nn import TransformerConfig, TransformerLM
    from lmfs.train.config import MODEL_TABLE, nested_config

    path = find_checkpoint(checkpoint)
    payload = read_checkpoint(path, map_location=device)
    if not payload.get("config"):
        raise CheckpointError(
            f"{path} has no run config (was it written by `lmfs train`?); cannot rebuild the model"
        )
    cfg = nested_config(payload["config"])
    try:
        config = TransformerConfig.from_dict(cfg[MODEL_TABLE])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model from its config: {exc}") from None
    model = TransformerLM(config, device=device)
    model.load_state_dict(payload["model"])
    model.eval()
    return model, cfg
