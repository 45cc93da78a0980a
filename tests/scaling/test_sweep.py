"""Sweep planning and run-by-run resumability (with a stand-in for lmfs.train.train)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lmfs.scaling.accounting import param_count, training_flops_per_token
from lmfs.scaling.shapes import shape_for_params
from lmfs.scaling.sweep import SweepSpec, plan, read_results, run_sweep


@dataclass
class FakeResult:
    final_val_loss: float
    final_train_loss: float


def _spec(tmp_path, **kw) -> SweepSpec:
    return SweepSpec(
        budgets=(1e11, 3e11),
        sizes=(4e4, 1e5, 2.5e5),
        min_steps=20,
        runs_dir=str(tmp_path / "runs"),
        table=str(tmp_path / "sweep.csv"),
        **kw,
    )


def test_shape_for_params_is_close():
    for n in (5e4, 1e5, 3e5, 1e6, 3e6):
        s = shape_for_params(n, 10_000, 64)
        assert 0.6 < param_count(s).non_embedding / n < 1.6


def test_plan_spends_the_budget(tmp_path):
    spec = _spec(tmp_path)
    runs, notes = plan(spec)
    assert runs
    for r in runs:
        assert r["steps"] >= spec.min_steps
        per_step = training_flops_per_token(r["shape"]) * spec.batch_size * spec.context_length
        assert r["budget"] - per_step < r["compute_actual"] <= r["budget"]  # whole steps, within one step
    assert all("min_steps" in n for n in notes)


def test_resumes_run_by_run(tmp_path):
    spec = _spec(tmp_path)
    runs, _ = plan(spec)
    assert len(runs) >= 4
    calls: list[str] = []

    def flaky(cfg):
        calls.append(cfg.out_dir)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return FakeResult(final_val_loss=5.0 + cfg.model.d_model / 1000, final_train_loss=5.1)

    with pytest.raises(RuntimeError, match="power cut"):
        run_sweep(spec, train_fn=flaky, progress=False, log=lambda s: None)
    assert len(read_results(spec.table)) == 2  # the finished runs survived the crash

    calls.clear()
    df = run_sweep(
        spec,
        train_fn=lambda cfg: (calls.append(cfg.out_dir), FakeResult(5.0, 5.1))[1],
        progress=False,
        log=lambda s: None,
    )
    assert len(calls) == len(runs) - 2  # only the runs not yet in the table
    assert len(df) == len(runs) and df["run_id"].is_unique
    calls.clear()
    run_sweep(
        spec,
        train_fn=lambda cfg: calls.append(cfg) or FakeResult(5.0, 5.1),
        progress=False,
        log=lambda s: None,
    )
    assert calls == []


def test_train_config_matches_plan(tmp_path):
    pytest.importorskip("lmfs.train")
    from lmfs.scaling.sweep import _train_config

    spec = _spec(tmp_path)
    run = plan(spec)[0][0]
    cfg = _train_config(spec, run)
    cfg.validate()
    assert cfg.max_steps == run["steps"] and cfg.model.d_model == run["shape"].d_model
    assert cfg.tokens_per_step * cfg.max_steps == run["tokens"]
