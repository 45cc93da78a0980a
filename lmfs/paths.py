"""Where lmfs finds things: the project root, the shared data folder, the reports folder."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The checkout that holds ``pyproject.toml`` (editable installs), else the current directory."""
    candidate = PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists():
        return candidate
    return Path.cwd()


def shared_dir() -> Path:
    """The shared data folder: ``$LMFS_SHARED_DIR``, else ``../shared`` beside the checkout.

    Raises FileNotFoundError with what to do when neither exists.
    """
    env = os.environ.get("LMFS_SHARED_DIR")
    candidates = [Path(env)] if env else []
    candidates += [project_root().parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    for c in candidates:
        if (c / "data").is_dir():
            return c.resolve()
    raise FileNotFoundError(
        "shared data folder not found (looked for " + ", ".join(str(c) for c in candidates) + "); "
        "set LMFS_SHARED_DIR to a folder with data/ in it, or pass your own files on the command line"
    )


def shared_data(*parts: str) -> Path:
    """A path under ``<shared>/data``, e.g. ``shared_data("corpus", "gutenberg_valid.txt")``."""
    return shared_dir().joinpath("data", *parts)


def has_shared_data(*parts: str) -> bool:
    try:
        return shared_data(*parts).exists()
    except FileNotFoundError:
        return False


def reports_dir() -> Path:
    """``$LMFS_REPORTS_DIR`` or ``<project root>/reports``."""
    env = os.environ.get("LMFS_REPORTS_DIR")
    return Path(env) if env else project_root() / "reports"
