"""lmfs.profile.timing and lmfs.profile.sizes."""

from __future__ import annotations

import statistics

import pytest

from lmfs.profile.sizes import make_config, parse_size
from lmfs.profile.timing import Timing, time_fn


def test_time_fn_warms_up_then_times_each_step():
    calls = []
    timing = time_fn(lambda: calls.append(1), "cpu", warmup=3, steps=4)
    assert len(calls) == 7
    assert len(timing.times) == 4 and all(t >= 0 for t in timing.times)


def test_timing_statistics():
    t = Timing([1.0, 2.0, 4.0])
    assert t.mean == pytest.approx(7 / 3)
    assert t.std == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))
    assert t.median == 2.0
    assert Timing([3.0]).std == 0.0


def test_time_fn_rejects_zero_steps():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        time_fn(lambda: None, steps=0)


def test_course_sizes_are_the_assignment_table():
    expected = {"small": (768, 3072, 12, 12), "medium": (1024, 4096, 24, 16), "large": (1280, 5120, 36, 20),
                "xl": (1600, 6400, 48, 25), "2.7B": (2560, 10240, 32, 32)}
    for name, dims in expected.items():
        got, size = parse_size(name)
        s = make_config(size, 128)
        assert got == name and (s.d_model, s.d_ff, s.num_layers, s.num_heads) == dims
        assert (s.vocab_size, s.context_length) == (10_000, 128)


def test_sizes_are_the_presets():
    from lmfs.nn import preset

    assert make_config(parse_size("tiny")[1], 64) == preset("tiny", context_length=64)
    llama = make_config(parse_size("llama-124m")[1], 256)  # a named model keeps its vocabulary
    assert llama == preset("llama-124m", context_length=256)
    assert make_config(parse_size("mini")[1], 32, vocab_size=500).vocab_size == 500


def test_parse_size_custom_and_errors():
    name, size = parse_size("128,512,2,4")
    cfg = make_config(size, 64)
    assert name == "custom-128-512-2-4" and cfg.d_model == 128 and cfg.num_heads == 4 and cfg.d_ff == 512
    with pytest.raises(ValueError, match="divisible"):
        parse_size("130,512,2,4")
    with pytest.raises(ValueError, match="unknown model size"):
        parse_size("huge")
