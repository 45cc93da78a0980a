"""Answer extraction for the MMLU and GSM8K evaluations.

MMLU (:func:`parse_mmlu_response`): the answer letter the output commits to, ``None`` if it commits to none.

1. The first phrase ``answer is X`` / ``answer: X`` / ``answer X`` ("answer" in any case, e.g. "The correct
   answer is B", "Answer: (C)"), where X is an **upper-case** option letter, optionally in parentheses and not
   followed by a letter or digit (so "the answer is a virus" or "the answer is A1" do not count).
2. Otherwise, the output (stripped) starts with such a standalone option letter: "B", "B.", "(B)", "B) ...".
3. Otherwise ``None``.

The option letters are A, B, C, ... one per entry of ``mmlu_example["options"]`` (A–D when absent).

GSM8K (:func:`parse_gsm8k_response`): the last number in the output, thousands separators removed, as a
string: an optional minus sign directly before the digits, digits with commas between digit groups, an optional
decimal part (``"$1,234.50."`` → ``"1234.50"``); ``None`` when the output has no digit.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

_NUMBER = re.compile(r"-?\d(?:[\d,]*\d)?(?:\.\d+)?")


def _option_letters(mmlu_example: Mapping[str, Any] | None) -> str:
    options = (mmlu_example or {}).get("options")
    if not options:
        return "ABCD"
    return string.ascii_uppercase[: len(options)]


def parse_mmlu_response(mmlu_example: Mapping[str, Any] | None, model_output: str) -> str | None:
    """The option letter ``model_output`` commits to, or ``None`` (rules in the module docstring)."""
    letters = re.escape(_option_letters(mmlu_example))
    letter = rf"\(?([{letters}])\)?(?![A-Za-z0-9])"
    phrase = re.search(rf"(?i:answer)\s*(?:(?i:is)\s*|:\s*)?{letter}", model_output)
    if phrase:
        return phrase.group(1)
    lead = re.match(rf"\s*{letter}", model_output)
    if lead:
        return lead.group(1)
    return None


def parse_gsm8k_response(model_output: str) -> str | None:
    """The last number in ``model_output`` with its commas removed, or ``None`` (rules in the module docstring)."""
    numbers = _NUMBER.findall(model_output)
    if not numbers:
        return None
    return numbers[-1].replace(",", "")
