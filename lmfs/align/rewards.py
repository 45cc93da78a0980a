"""Reward functions ``reward_fn(response, ground_truth) -> {"reward", "format_reward", "answer_reward"}``.

* :func:`gsm8k_reward` — the last number of the response (``parse_gsm8k_response``) equals the reference.
* :func:`r1_zero_reward` — DeepSeek R1-Zero's format: the response (after the prompt's ``<think>``) must read
  ``... </think> <answer> ... </answer>``; format reward 1 when it does; answer reward 1 when the text inside
  ``<answer>`` matches the truth (as a GSM8K number, or exactly); reward = answer reward, and 0 without the format.
* :func:`addition_reward` — the synthetic task's exact verifier.

:class:`SafeReward` wraps any of them for training: a reward function that raises, or returns something
that is not a finite number, is *recorded* (``errors``, with the first message) and the rollout gets ``None``
rather than a silent 0; the trainers drop such groups from the update and count them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from lmfs.align.parsing import parse_gsm8k_response
from lmfs.align.tasks import addition_verifier

RewardFn = Callable[[str, str], dict[str, float]]

_R1_FORMAT = re.compile(r"^(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.DOTALL)


def _number_match(predicted: str | None, truth: str) -> bool:
    if predicted is None:
        return False
    try:
        return float(predicted) == float(truth.replace(",", ""))
    except ValueError:
        return predicted.strip() == truth.strip()


def gsm8k_reward(response: str, ground_truth: str) -> dict[str, float]:
    ok = _number_match(parse_gsm8k_response(response), ground_truth)
    return {"reward": float(ok), "format_reward": 1.0, "answer_reward": float(ok)}


def r1_zero_reward(response: str, ground_truth: str) -> dict[str, float]:
    m = _R1_FORMAT.match(response)
    if not m or "<think>" in m.group("answer") or "</think>" in m.group("answer"):
        return {"reward": 0.0, "format_reward": 0.0, "answer_reward": 0.0}
    inner = m.group("answer").strip()
    ok = inner == ground_truth.strip() or _number_match(parse_gsm8k_response(inner), ground_truth)
    return {"reward": float(ok), "format_reward": 1.0, "answer_reward": float(ok)}


def addition_reward(response: str, ground_truth: str) -> dict[str, float]:
    ok = addition_verifier(response, ground_truth)
    return {"reward": float(ok), "format_reward": float(response.strip().isdigit()), "answer_reward": float(ok)}


REWARDS: dict[str, RewardFn] = {"gsm8k": gsm8k_reward, "r1_zero": r1_zero_reward, "addition": addition_reward}


def get_reward(name: str) -> RewardFn:
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; known: {', '.join(REWARDS)}")
    return REWARDS[name]


class SafeReward:
    """Calls ``fn``; a raise or a non-finite/missing ``reward`` gives None and is counted, never a silent 0."""

    def __init__(self, fn: RewardFn) -> None:
        self.fn = fn
        self.errors = 0
        self.first_error: str | None = None

    def __call__(self, response: str, truth: str) -> dict[str, float] | None:
        try:
            out: Any = self.fn(response, truth)
            value = float(out["reward"])
            if not math.isfinite(value):
                raise ValueError(f"reward is {value}")
        except Exception as exc:
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"{type(exc).__name__}: {exc}"
            return None
        return {k: float(v) for k, v in out.items()}
