"""Harmful-content classifiers: ``classify_nsfw`` and ``classify_toxic_speech``.

The course uses fastText models trained on the Jigsaw toxic-comment data (the ``obscene`` and ``toxic``
labels); they cannot be downloaded here. lmfs uses a trained model that ships inside a PyPI package instead:
``alt-profanity-check`` (MIT; a linear SVM with probability calibration over a bag-of-words vectorizer,
trained by its authors on ~200k human-labelled texts — Wikipedia talk-page comments of the Jigsaw set and the
Davidson et al. 2017 offensive-tweet set — its README reports 95.0% accuracy, precision 86.1%, recall 89.6% on
its own test split). Its one output, the probability that a text is profane/offensive, serves both:

* ``classify_toxic_speech(text) -> ("toxic" | "non-toxic", p)`` with ``p`` the probability of the returned
  label; ``toxic`` when the offensive probability is at least :data:`TOXIC_THRESHOLD`;
* ``classify_nsfw(text) -> ("nsfw" | "non-nsfw", p)``, the same probability with :data:`NSFW_THRESHOLD`
  (Jigsaw's ``obscene`` label is the profanity part of ``toxic``, so the one model is a fair stand-in for
  both; it is weaker than two dedicated models on sexual content without profanity).

Long documents are scored per line and the highest line probability counts (an offensive comment in a long
page is not averaged away), lines capped at :data:`MAX_LINES`. Measured precision/recall on a labelled set the
model never saw: ``lmfs/data/README.md``.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["NSFW_THRESHOLD", "TOXIC_THRESHOLD", "classify_nsfw", "classify_toxic_speech", "offensive_probability"]

TOXIC_THRESHOLD = 0.5
NSFW_THRESHOLD = 0.5
MAX_LINES = 2000
_MODEL: Any = None
_LOCK = threading.Lock()


def _model() -> Any:
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            try:
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from profanity_check import profanity_check
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "the harmful-content classifiers need alt-profanity-check: pip install 'lmfs[data]'"
                ) from e
            _MODEL = (profanity_check.vectorizer, profanity_check.model)
    return _MODEL


def offensive_probability(text: str) -> float:
    """Probability (0..1) that ``text`` is profane / offensive: the maximum over its non-empty lines."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    lines = [line for line in text.splitlines() if line.strip()][:MAX_LINES]
    if not lines:
        return 0.0
    vectorizer, model = _model()
    probs = model.predict_proba(vectorizer.transform(lines))[:, 1]
    return float(min(1.0, max(0.0, probs.max())))


def _label(p: float, threshold: float, yes: str, no: str) -> tuple[str, float]:
    return (yes, p) if p >= threshold else (no, 1.0 - p)


def classify_toxic_speech(text: str) -> tuple[str, float]:
    return _label(offensive_probability(text), TOXIC_THRESHOLD, "toxic", "non-toxic")


def classify_nsfw(text: str) -> tuple[str, float]:
    return _label(offensive_probability(text), NSFW_THRESHOLD, "nsfw", "non-nsfw")
