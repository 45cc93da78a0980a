"""The profiler's step memory (lmfs.profile.memory) on steps whose allocations are known by construction."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import record_function

from lmfs.profile.memory import live_curve, step_peak_memory, window

MIB = 2**20


def _block(mib: int) -> torch.Tensor:
    return torch.empty(mib * MIB, dtype=torch.uint8)


def test_peak_of_known_allocations_including_the_previous_steps_free():
    kept: list[torch.Tensor] = [_block(7)]  # allocated before profiling; freed (unreported on the CPU) in step 1

    def step():
        kept.clear()  # like zero_grad(set_to_none=True): frees what the previous step left (3 MiB)
        a = _block(1)
        b = _block(2)
        del a
        kept.append(_block(3))  # live 2 + 3 = 5 MiB above the low point: the peak
        del b

    r = step_peak_memory(step, "cpu")
    assert r["peak_bytes"] == 5 * MIB
    assert r["start_bytes"] == 3 * MIB and r["end_bytes"] == 3 * MIB
    assert r["events"] == 6  # 1 free of the previous block, 3 allocations, 2 frees
    assert r["device"] == "cpu" and "cuda_max_allocated_bytes" not in r


def test_phase_ranges_get_their_own_peak_on_the_step_baseline():
    def step():
        with record_function("forward"):
            t = _block(4)
            u = _block(2)
            del t, u
        with record_function("optimizer"):
            v = _block(1)
            del v

    r = step_peak_memory(step, "cpu")
    assert r["peak_bytes"] == 6 * MIB
    assert r["phase_peak_bytes"] == {"forward": 6 * MIB, "optimizer": 1 * MIB}  # no backward range ran
    assert r["start_bytes"] == 0 and r["end_bytes"] == 0


def test_curve_and_window():
    curve = live_curve([(1, 10), (2, 5), (3, -12), (4, 20), (5, -20)])
    assert curve == [(1, 10), (2, 15), (3, 3), (4, 23), (5, 3)]
    assert window(curve, 3, 5) == (15, 3, 23)  # live before t=3, lowest and highest in [3, 5]
    assert window(curve, 0, 0) == (0, 0, 0)


def test_steps_must_be_positive():
    with pytest.raises(ValueError, match="steps"):
        step_peak_memory(lambda: None, "cpu", steps=0)
