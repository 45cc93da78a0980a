"""Specs for the MMLU and GSM8K answer parsers.

GSM8K: the last number in the output, commas removed, as a string; ``None`` when there is none.
MMLU: the option letter the output commits to ("The correct answer is B", "Answer: C"); ``None`` when it commits
to none. Real examples come from the shared GSM8K test set and the MMLU test CSVs.
"""

from __future__ import annotations

import csv
import json

import pytest

from specs.align.reference_dpo import shared_data

LETTERS = "ABCD"


def _gsm8k_test() -> list[dict[str, str]]:
    with open(shared_data("eval", "gsm8k", "test.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _mmlu_examples(per_subject: int = 2) -> list[dict]:
    folder = shared_data("eval", "mmlu", "test")
    out = []
    for path in sorted(folder.glob("*_test.csv")):
        subject = path.name[: -len("_test.csv")]
        with open(path, encoding="utf-8", newline="") as fh:
            for row in list(csv.reader(fh))[:per_subject]:
                out.append({"subject": subject, "question": row[0], "options": row[1:5], "answer": row[5]})
    assert len(out) >= 100
    return out


@pytest.mark.points(2)
def test_gsm8k_parses_every_reference_solution(adapter):
    """Every GSM8K test solution ends in "#### <answer>": the parser returns that answer without commas (the
    worked steps before it are full of other numbers, e.g. "<<16-3-4=9>>9")."""
    rows = _gsm8k_test()
    assert len(rows) > 1000
    for row in rows:
        expected = row["answer"].split("####")[-1].strip().replace(",", "")
        assert adapter.run_parse_gsm8k_response(model_output=row["answer"]) == expected, row["answer"]


@pytest.mark.points(1)
@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May. #### 72",
            "72",
        ),
        ("She makes 9 * 2 = $18 every day.", "18"),
        ("So the total is $1,250.", "1250"),
        ("The answer is 1,000,000 grains of sand in 3 buckets... wait, it is 12 buckets", "12"),
        ("42", "42"),
        ("  7 apples\n\n", "7"),
    ],
)
def test_gsm8k_last_number(adapter, output, expected):
    assert adapter.run_parse_gsm8k_response(model_output=output) == expected


@pytest.mark.points(1)
def test_gsm8k_signs_and_decimals(adapter):
    assert adapter.run_parse_gsm8k_response(model_output="The temperature ends at -10 degrees.") == "-10"
    assert adapter.run_parse_gsm8k_response(model_output="Each costs 2.5 dollars, so 3 cost 7.5") == "7.5"


@pytest.mark.points(1)
@pytest.mark.parametrize(
    "output",
    [
        "Natalia sold twenty-four clips in May. Thus, Natalia sold seventy-two clips altogether in April and May.",
        "",
        "I do not know.",
        "#### ",
    ],
)
def test_gsm8k_without_a_number_is_none(adapter, output):
    assert adapter.run_parse_gsm8k_response(model_output=output) is None


@pytest.mark.points(2)
def test_mmlu_real_examples_every_letter(adapter):
    """For real MMLU questions, "The correct answer is X." followed by the option's text gives X, for each of A–D
    (not only the key), and the bare statement "The correct answer is X" too."""
    for ex in _mmlu_examples():
        for k, letter in enumerate(LETTERS):
            for output in (
                f"The correct answer is {letter}. {ex['options'][k]}",
                f"The correct answer is {letter}",
            ):
                got = adapter.run_parse_mmlu_response(mmlu_example=ex, model_output=output)
                assert got == letter, (ex["question"], output, got)


@pytest.mark.points(1)
@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "The correct answer is B. There is only one human polyomavirus known at present, the BK virus.",
            "B",
        ),
        ("The answer is C", "C"),
        ("Answer: D", "D"),
        ("The correct answer is (A).", "A"),
        ("After weighing the options, the correct answer is B, since the others are too large.", "B"),
        ("A careful count shows that the correct answer is C.", "C"),
    ],
)
def test_mmlu_answer_phrasings(adapter, output, expected):
    ex = {
        "subject": "virology",
        "question": "How many human polyomaviruses are known at present?",
        "options": ["100", "1", "10", "unknown"],
        "answer": "A",
    }
    assert adapter.run_parse_mmlu_response(mmlu_example=ex, model_output=output) == expected


@pytest.mark.points(1)
@pytest.mark.parametrize(
    "output",
    [
        "The correct answer is 10000 polyomaviruses.",
        "I am not sure which one is right.",
        "",
        "The correct answer is a small DNA virus.",
    ],
)
def test_mmlu_without_a_letter_is_none(adapter, output):
    """No committed letter gives None — the article "a" is not option A."""
    ex = {
        "subject": "virology",
        "question": "How many human polyomaviruses are known at present?",
        "options": ["100", "1", "10", "unknown"],
        "answer": "A",
    }
    assert adapter.run_parse_mmlu_response(mmlu_example=ex, model_output=output) is None
