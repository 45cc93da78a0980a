"""run_colocated: rank code that must run beside the adapter (it wraps ``torch.distributed``), under plain pytest
(spawned ranks) and under the grader (shipped by value into the sandboxed worker), on a mini spec suite of its
own; only plain data comes back, and what is not plain fails the spec."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from lmfs.harness.distributed import RankResultInvalid, plain_result, run_colocated
from lmfs.harness.grade import GradeOptions, grade
from lmfs.harness.sandbox import probe

ROOT = Path(__file__).resolve().parents[2]

SPECS = '''
import os
import time

import pytest
import torch
import torch.distributed as dist

TOLERANCE = {"atol": 0.0}


class Calls:
    """All-reduces this process issued (the wrapper is installed in the rank, beside the adapter)."""

    n = 0


def _count_all_reduce():
    original = dist.all_reduce

    def counting(tensor, *args, **kwargs):
        Calls.n += 1
        return original(tensor, *args, **kwargs)

    dist.all_reduce = counting


def _summed(rank, world, adapter, base, own):
    _count_all_reduce()
    out = adapter.summed(torch.full((3,), float(base + own)))
    return {"calls": Calls.n, "out": out, "rank": rank, "world": world, "tol": TOLERANCE["atol"]}


def _sees(rank, world, adapter, path):
    return {"exists": os.path.exists(path), "has": adapter.has("summed")}


def _calls(rank, world, adapter, name):
    return getattr(adapter, name)()


def _sleep(rank, world, adapter):
    time.sleep(600)


@pytest.mark.colocated
def test_counted_beside_the_adapter(run_colocated):
    res = run_colocated(_summed, 2, 1.0, rank_args=[(0.0,), (1.0,)], timeout=60)
    for r, got in enumerate(res):
        assert got["rank"] == r and got["world"] == 2 and got["tol"] == 0.0
        assert got["calls"] == 1, got
        assert torch.equal(got["out"], torch.full((3,), 3.0))  # (1 + 0) + (1 + 1), recomputed here


@pytest.mark.colocated
def test_the_spec_file_is_not_in_view(run_colocated):
    res = run_colocated(_sees, 2, __file__, timeout=60)
    assert all(r["has"] for r in res)
    assert not any(r["exists"] for r in res), "the rank code saw the spec file"


@pytest.mark.colocated
def test_not_implemented(run_colocated):
    run_colocated(_calls, 2, "stub", timeout=60)


@pytest.mark.colocated
def test_missing(run_colocated):
    run_colocated(_calls, 2, "no_such_function", timeout=60)


@pytest.mark.colocated
def test_a_result_that_is_not_plain_data(run_colocated):
    run_colocated(_calls, 2, "an_object", timeout=60)


@pytest.mark.colocated
def test_a_rank_that_hangs(run_colocated):
    run_colocated(_sleep, 2, timeout=5)
'''

ADAPTER = '''
import torch.distributed as dist


def summed(t):
    dist.all_reduce(t)
    return t


def stub():
    raise NotImplementedError("not yet")


class Thing:
    pass


def an_object():
    return {"value": Thing()}
'''

EXPECTED = {
    "test_counted_beside_the_adapter": "passed",
    "test_not_implemented": "not_implemented",
    "test_missing": "missing",
    "test_a_result_that_is_not_plain_data": "failed",
    "test_a_rank_that_hangs": "failed",
}


def _suite(tmp_path: Path) -> tuple[Path, Path]:
    specs = tmp_path / "specs" / "ranks"
    specs.mkdir(parents=True)
    (specs / "test_colo.py").write_text(textwrap.dedent(SPECS))
    adapter = tmp_path / "student" / "adapters.py"
    adapter.parent.mkdir()
    adapter.write_text(textwrap.dedent(ADAPTER))
    return specs.parent, adapter


@pytest.mark.skipif(not probe().sandboxed, reason=f"no working bwrap here: {probe().reason}")
def test_colocated_specs_are_graded_in_the_sandbox(tmp_path: Path) -> None:
    """Graded: the rank code runs in the worker (its all-reduce wrapper sees the adapter's call, the spec
    file is not in its view), a stub is not_implemented, a missing function missing, a result holding an
    object of the submission's a failure, a hanging rank a failure within the spec's own timeout."""
    specs, adapter = _suite(tmp_path)
    doc = grade(GradeOptions(adapter=str(adapter), specs=specs, timeout=60, memory_mb=4096,
                             reports_dir=tmp_path / "reports", cwd=ROOT))
    outcomes = {t["nodeid"].split("::")[-1]: t["outcome"] for t in doc["tests"]}
    assert outcomes == {**EXPECTED, "test_the_spec_file_is_not_in_view": "passed"}, doc["tests"]
    assert doc["sandbox"]["sandboxed"] is True
    assert doc["total"]["possible"] == 6.0 and doc["total"]["earned"] == 2.0


def _rank_sum(rank: int, world: int, adapter, scale: float, own: float) -> dict:
    import torch.distributed as dist

    t = torch.full((2,), scale * own)
    dist.all_reduce(t)
    return {"sum": t, "adapter": adapter}


def test_run_colocated_under_plain_pytest() -> None:
    """Spawned ranks; the adapter given to the ranks is the one passed in; per-rank arguments."""
    res = run_colocated(_rank_sum, 2, "an adapter", 2.0, rank_args=[(1.0,), (3.0,)], timeout=60)
    assert [r["adapter"] for r in res] == ["an adapter"] * 2
    assert all(torch.equal(r["sum"], torch.full((2,), 8.0)) for r in res)


def test_plain_result_keeps_plain_data_and_refuses_the_rest() -> None:
    p = torch.nn.Parameter(torch.ones(2))
    out = plain_result({"a": [1, 2.5, "x", None, True], "t": p.detach(), "n": (1, {"k": torch.zeros(1)})})
    assert type(out["t"]) is torch.Tensor and out["n"][1]["k"].shape == (1,)

    class F(float):
        pass

    for bad in ({"x": F(1.0)}, {1.5: 1}, [object()], {"t": torch.ones(2, requires_grad=True)},
                {"t": torch.ones(1).to_sparse()}, [[[[[[]]]]]] * 0 + [_deep(40)]):
        with pytest.raises(RankResultInvalid):
            plain_result(bad)


def _deep(n: int) -> list:
    x: list = []
    for _ in range(n):
        x = [x]
    return x
