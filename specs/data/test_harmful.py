"""Specs for the harmful-content classifiers (``run_classify_nsfw``, ``run_classify_toxic_speech``).

Each returns ``(label, score)`` with labels ``nsfw`` / ``non-nsfw`` and ``toxic`` / ``non-toxic`` and a score in
[0, 1] (the confidence of the returned label). ``harmful_labelled.jsonl`` beside this file is a small
hand-labelled set of talk-page-style comments (obscene insults, insults without obscenity, benign comments),
written for these specs, so no shipped model was trained on it: each classifier must get most of it right.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

LABELLED = [json.loads(line) for line in (Path(__file__).parent / "harmful_labelled.jsonl").open(encoding="utf-8")]


def classify(fn, text, labels):
    out = fn(text)
    assert isinstance(out, tuple) and len(out) == 2, out
    label, score = out
    assert label in labels, f"label {label!r} not in {labels}"
    assert 0.0 <= float(score) <= 1.0, score
    return label, float(score)


def _rates(adapter, kind):
    fn = adapter.run_classify_nsfw if kind == "nsfw" else adapter.run_classify_toxic_speech
    labels = (kind, f"non-{kind}")
    tp = fp = fn_ = tn = 0
    for row in LABELLED:
        label, _ = classify(fn, row["text"], labels)
        if row["toxic"] and not row[kind]:
            continue  # an insult without obscenity: not scored for NSFW
        if label == kind and row[kind]:
            tp += 1
        elif label == kind:
            fp += 1
        elif row[kind]:
            fn_ += 1
        else:
            tn += 1
    return tp, fp, fn_, tn


@pytest.mark.points(2)
def test_classify_toxic_speech_examples(adapter):
    assert classify(adapter.run_classify_toxic_speech, "You are a stupid idiot, shut up and get lost, loser.",
                    ("toxic", "non-toxic"))[0] == "toxic"
    label, score = classify(adapter.run_classify_toxic_speech,
                            "Thank you for the careful edit, the references look good now.", ("toxic", "non-toxic"))
    assert label == "non-toxic" and score >= 0.5


@pytest.mark.points(2)
def test_classify_nsfw_examples(adapter):
    assert classify(adapter.run_classify_nsfw, "Fuck off and suck my dick, you piece of shit.",
                    ("nsfw", "non-nsfw"))[0] == "nsfw"
    label, score = classify(adapter.run_classify_nsfw, "The museum opens at ten on weekdays.", ("nsfw", "non-nsfw"))
    assert label == "non-nsfw" and score >= 0.5


@pytest.mark.points(3)
@pytest.mark.parametrize("kind", ["toxic", "nsfw"])
def test_classifier_precision_recall_on_held_out_labels(adapter, kind):
    tp, fp, fn, tn = _rates(adapter, kind)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    assert precision >= 0.8 and recall >= 0.75, f"{kind}: precision {precision:.2f} recall {recall:.2f}"
    assert tn >= 0.85 * 22, f"{kind}: only {tn} of 22 benign comments classified as benign"


@pytest.mark.points(1)
def test_classifiers_never_raise(adapter):
    @settings(max_examples=40, deadline=None)
    @given(st.text(max_size=200))
    def check(text):
        classify(adapter.run_classify_nsfw, text, ("nsfw", "non-nsfw"))
        classify(adapter.run_classify_toxic_speech, text, ("toxic", "non-toxic"))

    check()
