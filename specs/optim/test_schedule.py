"""Specs for the cosine learning-rate schedule with linear warmup."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specs.optim.reference import cosine_schedule

LR = st.floats(1e-5, 10.0)


@st.composite
def schedules(draw):
    lr_max = draw(LR)
    lr_min = draw(st.floats(0.0, 1.0)) * lr_max
    warmup = draw(st.integers(1, 50))
    cycle = warmup + draw(st.integers(1, 200))
    return lr_max, lr_min, warmup, cycle


@pytest.mark.points(2)
def test_schedule_matches_reference(adapter):
    @given(sched=schedules(), data=st.data())
    def check(sched, data):
        lr_max, lr_min, warmup, cycle = sched
        it = data.draw(st.integers(0, cycle + 50))
        got = adapter.run_get_lr_cosine_schedule(it, lr_max, lr_min, warmup, cycle)
        assert got == pytest.approx(cosine_schedule(it, lr_max, lr_min, warmup, cycle), rel=1e-9, abs=1e-12)

    check()


@pytest.mark.points(1)
def test_schedule_course_values(adapter):
    """The CS336 example: max 1, min 0.1, warmup 7, cycle 21 (values computed by hand from the formula)."""
    import math

    expected = [i / 7 for i in range(7)]
    expected += [0.1 + 0.45 * (1 + math.cos(math.pi * (i - 7) / 14)) for i in range(7, 22)]
    expected += [0.1, 0.1, 0.1]
    got = [adapter.run_get_lr_cosine_schedule(i, 1.0, 0.1, 7, 21) for i in range(25)]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.points(2)
def test_schedule_endpoints_and_monotone_pieces(adapter):
    @given(sched=schedules())
    def check(sched):
        lr_max, lr_min, warmup, cycle = sched
        lr = lambda it: adapter.run_get_lr_cosine_schedule(it, lr_max, lr_min, warmup, cycle)
        assert lr(0) == pytest.approx(0.0, abs=1e-12)
        assert lr(warmup) == pytest.approx(lr_max, rel=1e-9)
        assert lr(cycle) == pytest.approx(lr_min, rel=1e-9, abs=1e-12)
        assert lr(cycle + 1) == pytest.approx(lr_min) and lr(cycle + 1000) == pytest.approx(lr_min)
        warm = [lr(i) for i in range(warmup + 1)]
        assert all(a < b for a, b in pairwise(warm)), "warmup must increase strictly"
        decay = [lr(i) for i in range(warmup, cycle + 1)]
        assert all(a >= b - 1e-12 for a, b in pairwise(decay)), "cosine part must not increase"
        assert all(lr_min - 1e-12 <= v <= lr_max + 1e-12 for v in decay)

    check()
