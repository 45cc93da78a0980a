"""Checkpoints: model, optimizer, iteration, RNG states and run config in one file, written atomically.

A checkpoint file is a ``torch.save`` of a dict (loadable with ``weights_only=True``)::

    {"format": "lmfs-checkpoint", "version": 1, "iteration": int, "model": state_dict,
     "optimizer": state_dict | None, "rng": {...} | None, "config": dict | None, "extra": dict}

Atomic write: the bytes go to a hidden temp file beside the target, which is flushed and fsync'ed, then
``os.replace``'d over the target and the folder is fsync'ed. A crash at any moment leaves either the old
file or the new one, never a torn one. Runs keep ``checkpoints/ckpt_<iteration>.pt`` files;
:func:`latest_checkpoint` finds the newest complete one, :func:`find_checkpoint` the one a path names, and
:func:`load_model` rebuilds the model a run saved (from its config, nested or in the older flat layout).
"""

from __future__ import annotations

import os
import random
import re
import time
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


def atomic_torch_save(obj: Any, path: str | os.PathLike, before_replace: Any = None) -> None:
    """``torch.save(obj)`` to ``path`` atomically (:func:`lmfs.atomic.atomic_open`: temp file + fsync +
    os.replace + fsync of the folder). ``before_replace`` runs once the temp file is complete and fsync'ed."""
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)
        if before_replace is not None:
            fh.flush()
            os.fsync(fh.fileno())
            before_replace()


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


def read_checkpoint(src: PathOrFile, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint's payload dict (see the module docstring). Raises CheckpointError when unreadable."""
    name = str(src) if isinstance(src, (str, os.PathLike)) else getattr(src, "name", "<file object>")
    if isinstance(src, (str, os.PathLike)) and not Path(src).is_file():
        raise CheckpointError(f"checkpoint not found: {src}")
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
    """The newest complete checkpoint in ``folder``, or None."""
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


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
    """``path`` itself when it is a file; for a run folder (or its ``checkpoints/``), the newest checkpoint."""
    p = Path(path)
    if p.is_file():
        return p
    for folder in (p / "checkpoints", p):
        found = latest_checkpoint(folder)
        if found is not None:
            return found
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
