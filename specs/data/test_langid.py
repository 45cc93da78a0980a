"""Specs for language identification (``run_identify_language(text) -> (label, score)``).

Labels are ISO 639 codes as fastText's ``lid.176`` writes them (``en``, ``zh``, ``de`` …) and the score is a
probability in [0, 1]. Hand-written paragraphs in seven languages must come back with their code and a
confident score; text with newlines must work (fastText predicts one line); arbitrary text never raises; the
real Common Crawl pages declared in Chinese and Cyrillic charsets are identified as ``zh`` and ``ru`` after
extraction.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specs.data.test_extract import html_responses, web_file

SAMPLES = {
    "en": "The committee met on Tuesday to discuss the budget for next year. Most members agreed that the "
    "library needs a new roof before the winter, and that the reading room should stay open longer.",
    "de": "Der Ausschuss hat sich am Dienstag getroffen, um den Haushalt für das nächste Jahr zu besprechen. "
    "Die meisten Mitglieder waren sich einig, dass die Bibliothek vor dem Winter ein neues Dach braucht.",
    "fr": "Le comité s'est réuni mardi pour discuter du budget de l'année prochaine. La plupart des membres "
    "ont convenu que la bibliothèque a besoin d'un nouveau toit avant l'hiver.",
    "es": "El comité se reunió el martes para discutir el presupuesto del próximo año. La mayoría de los "
    "miembros estuvo de acuerdo en que la biblioteca necesita un techo nuevo antes del invierno.",
    "ru": "Комитет собрался во вторник, чтобы обсудить бюджет на следующий год. Большинство членов "
    "согласились, что библиотеке нужна новая крыша до зимы.",
    "zh": "委员会星期二开会讨论明年的预算。大多数成员都同意图书馆在冬天之前需要一个新屋顶，阅览室也应该延长开放时间。",
    "ja": "委員会は火曜日に集まり、来年の予算について話し合いました。ほとんどのメンバーは、冬の前に図書館の新しい屋根が必要だと考えています。",
}


def identify(adapter, text):
    out = adapter.run_identify_language(text)
    assert isinstance(out, tuple) and len(out) == 2, out
    label, score = out
    assert isinstance(label, str), label
    assert 0.0 <= float(score) <= 1.0, score
    return label, float(score)


@pytest.mark.points(3)
@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_identify_language_of_paragraphs(adapter, lang):
    label, score = identify(adapter, SAMPLES[lang])
    assert label == lang, f"{lang} paragraph identified as {label!r}"
    assert score >= 0.6, f"{lang}: score {score:.3f} is not confident"


@pytest.mark.points(1)
def test_identify_language_with_newlines(adapter):
    text = SAMPLES["en"].replace(". ", ".\n") + "\n\n" + SAMPLES["en"]
    label, score = identify(adapter, text)
    assert label == "en" and score >= 0.6


@pytest.mark.points(1)
def test_identify_language_scores_rank_clear_over_mixed(adapter):
    """A clean paragraph is identified more confidently than the same words half mixed with another language."""
    _, clean = identify(adapter, SAMPLES["en"])
    mixed_label, mixed = identify(adapter, SAMPLES["en"][:100] + " " + SAMPLES["de"][:100])
    assert mixed_label in ("en", "de")
    assert clean > mixed


@pytest.mark.points(1)
def test_identify_language_never_raises(adapter):
    @settings(max_examples=60, deadline=None)
    @given(st.text(max_size=300))
    def check(text):
        identify(adapter, text)

    check()


@pytest.mark.points(2)
def test_identify_language_of_cc_pages(adapter):
    """Sample pages declared in GB2312/GBK whose letters are mostly Han are Chinese; those declared in
    windows-1251 whose letters are mostly Cyrillic are Russian (one GB2312 page of the sample is in English)."""
    import re

    wanted = {"gb2312": ("zh", r"[\u4e00-\u9fff]"), "gbk": ("zh", r"[\u4e00-\u9fff]"),
              "windows-1251": ("ru", r"[\u0400-\u04ff]")}
    checked = 0
    for uri, html in html_responses(web_file("cc_sample_16pages.warc.gz")):
        m = re.search(rb"<meta[^>]*charset\s*=\s*[\"']?([\w-]+)", html[:4096], re.IGNORECASE)
        charset = m.group(1).decode().lower() if m else None
        if charset in wanted:
            lang, script = wanted[charset]
            text = adapter.run_extract_text_from_html_bytes(html)
            letters = [c for c in text if c.isalpha()]
            if len(re.findall(script, "".join(letters))) < 0.5 * len(letters):
                continue
            label, _ = identify(adapter, text)
            assert label == lang, f"{uri}: declared {charset}, identified {label!r}"
            checked += 1
    assert checked >= 2
