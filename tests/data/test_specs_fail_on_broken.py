"""Each data spec added with the model-based filters fails on a deliberately broken adapter: the specs can fail.

A broken adapter is lmfs's adapter with one function replaced (wrong label set, ignored newlines, inverted
classifier, constant answer, scores out of range); the spec functions are called with it directly.
"""

from __future__ import annotations

import types

import pytest

import lmfs.adapters as good
from specs.data import test_extract, test_harmful, test_langid, test_quality

pytest.importorskip("fasttext")
pytest.importorskip("resiliparse")


def broken(**overrides):
    ns = types.SimpleNamespace(**{k: getattr(good, k) for k in dir(good) if k.startswith(("run_", "get_"))})
    for k, v in overrides.items():
        setattr(ns, k, v)
    return ns


def always_en(text):
    return ("en", 0.9)


def lid_with_fasttext_labels(text):
    lang, score = good.run_identify_language(text)
    return (f"__label__{lang}", score)


def lid_percent(text):
    lang, score = good.run_identify_language(text)
    return (lang, score * 100)


def lid_first_line_only(text):
    return good.run_identify_language(text.split("\n")[0][:60] + " ...")


def toxic_inverted(text):
    label, p = good.run_classify_toxic_speech(text)
    return ("non-toxic" if label == "toxic" else "toxic", p)


def nsfw_never(text):
    return ("non-nsfw", 0.99)


def nsfw_bool_labels(text):
    label, p = good.run_classify_nsfw(text)
    return (label == "nsfw", p)


def quality_always_wiki(text):
    return ("wiki", 0.9)


def quality_by_length(text):
    return ("wiki", 0.8) if len(text) > 100 else ("cc", 0.8)


def extract_without_bullets_stripped_nothing(html_bytes):
    out = good.run_extract_text_from_html_bytes(html_bytes)
    return out.replace("\n", " ") if out else out


def test_langid_specs_fail_on_broken_adapters():
    with pytest.raises(AssertionError):
        test_langid.test_identify_language_of_paragraphs(broken(run_identify_language=always_en), "de")
    with pytest.raises(AssertionError):
        test_langid.test_identify_language_of_paragraphs(broken(run_identify_language=lid_with_fasttext_labels), "en")
    with pytest.raises(AssertionError):
        test_langid.test_identify_language_never_raises(broken(run_identify_language=lid_percent))
    with pytest.raises(AssertionError):
        test_langid.test_identify_language_of_cc_pages(broken(run_identify_language=always_en))
    with pytest.raises(AssertionError):
        test_langid.test_identify_language_scores_rank_clear_over_mixed(broken(run_identify_language=always_en))


def test_harmful_specs_fail_on_broken_adapters():
    with pytest.raises(AssertionError):
        test_harmful.test_classify_toxic_speech_examples(broken(run_classify_toxic_speech=toxic_inverted))
    with pytest.raises(AssertionError):
        test_harmful.test_classifier_precision_recall_on_held_out_labels(
            broken(run_classify_toxic_speech=toxic_inverted), "toxic")
    with pytest.raises(AssertionError):
        test_harmful.test_classify_nsfw_examples(broken(run_classify_nsfw=nsfw_never))
    with pytest.raises(AssertionError):
        test_harmful.test_classifier_precision_recall_on_held_out_labels(broken(run_classify_nsfw=nsfw_never), "nsfw")
    with pytest.raises(AssertionError):
        test_harmful.test_classifiers_never_raise(broken(run_classify_nsfw=nsfw_bool_labels))


def test_quality_specs_fail_on_broken_adapters():
    with pytest.raises(AssertionError):
        test_quality.test_quality_low(broken(run_classify_quality=quality_always_wiki), 0)
    with pytest.raises(AssertionError):
        test_quality.test_quality_low(broken(run_classify_quality=quality_by_length), 1)
    with pytest.raises(AssertionError):
        test_quality.test_quality_high(broken(run_classify_quality=lambda t: ("high", 0.9)), 0)


def test_extract_line_spec_fails_when_blocks_are_not_lines():
    with pytest.raises(AssertionError):
        test_extract.test_extract_blocks_become_lines_inline_does_not(
            broken(run_extract_text_from_html_bytes=extract_without_bullets_stripped_nothing))


def test_the_specs_pass_on_lmfs():
    """The same calls pass with the real adapter (so the failures above are the broken variants' doing)."""
    a = broken()
    test_langid.test_identify_language_of_paragraphs(a, "de")
    test_harmful.test_classify_toxic_speech_examples(a)
    test_harmful.test_classify_nsfw_examples(a)
    test_quality.test_quality_low(a, 0)
    test_quality.test_quality_high(a, 0)
    test_extract.test_extract_blocks_become_lines_inline_does_not(a)
