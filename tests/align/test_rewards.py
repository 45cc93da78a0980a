"""Rewards and the synthetic task's verifier."""

from __future__ import annotations

import random

import pytest

from lmfs.align.rewards import SafeReward, addition_reward, get_reward, gsm8k_reward, r1_zero_reward
from lmfs.align.tasks import AdditionTask, CharTokenizer


def test_r1_zero_format_and_answer():
    assert r1_zero_reward("2+2 is 4 </think> <answer>4</answer>", "4") == {
        "reward": 1.0, "format_reward": 1.0, "answer_reward": 1.0}
    assert r1_zero_reward("thinking </think> <answer>5</answer>", "4")["format_reward"] == 1.0
    assert r1_zero_reward("thinking </think> <answer>5</answer>", "4")["reward"] == 0.0
    assert r1_zero_reward("the answer is 4", "4")["reward"] == 0.0  # right number, wrong format
    assert r1_zero_reward("x </think> <answer>1,234</answer>", "1234")["reward"] == 1.0
    assert r1_zero_reward("x </think> <answer>4</answer> trailing", "4")["format_reward"] == 0.0


def test_gsm8k_and_addition_rewards():
    assert gsm8k_reward("so she pays $1,200.", "1200")["reward"] == 1.0
    assert gsm8k_reward("no idea", "3")["reward"] == 0.0
    assert addition_reward(" 57 ", "57")["reward"] == 1.0
    assert addition_reward("570", "57")["reward"] == 0.0
    with pytest.raises(ValueError, match="unknown reward"):
        get_reward("nope")


def test_safe_reward_counts_failures():
    def bad(r, t):
        if r == "boom":
            raise ZeroDivisionError("x")
        return {"reward": float("nan")} if r == "nan" else {"reward": 1.0}

    safe = SafeReward(bad)
    assert safe("ok", "") == {"reward": 1.0}
    assert safe("boom", "") is None and safe("nan", "") is None
    assert safe.errors == 2 and safe.first_error.startswith("ZeroDivisionError")


def test_addition_task_heldout_disjoint_and_exact():
    task = AdditionTask(digits=2, heldout_size=200, seed=1)
    held = {p.prompt for p in task.heldout}
    rng = random.Random(0)
    train = [task.sample(rng) for _ in range(3000)]
    assert not held & {p.prompt for p in train}
    for p in train[:200]:
        a, b = p.prompt[:-1].split("+")
        assert int(p.answer) == int(a) + int(b)
    tok = CharTokenizer()
    assert tok.decode(tok.encode("12+34=")) == "12+34="
    with pytest.raises(ValueError, match="not in the alphabet"):
        tok.encode("x")
