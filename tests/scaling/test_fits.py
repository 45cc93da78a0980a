"""Internals of the fits: Approach 1/2 details, power laws, bootstrap, tables, the analysis summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmfs.paths import has_shared_data
from lmfs.scaling.analysis import analyze_table, predictions_frame
from lmfs.scaling.isoflop import bootstrap_isoflop, fit_isoflop, parabola_vertex, per_budget_optima
from lmfs.scaling.parametric import ChinchillaParams, bootstrap_chinchilla, fit_chinchilla, huber, objective
from lmfs.scaling.powerlaw import fit_power_law
from lmfs.scaling.tables import canonical, load_epoch_table, load_isoflops_table, read_table

needs_shared = pytest.mark.skipif(not has_shared_data("scaling"), reason="needs ../shared/data/scaling")
LAW = ChinchillaParams(E=1.8, A=480.0, B=2100.0, alpha=0.35, beta=0.37)


def _isoflop_table(noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(seed)
    for c in (1e18, 3e18, 1e19, 3e19):
        n_opt = float(LAW.allocation(c)[0])
        for f in np.geomspace(0.2, 5, 7):
            n = n_opt * f
            loss = float(LAW.loss(n, c / (6 * n))) * np.exp(noise * rng.standard_normal())
            rows.append({"n_params": n, "compute": c, "loss": loss})
    return canonical(pd.DataFrame(rows))


def test_parabola_vertex_and_concave():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    v = parabola_vertex(x, 2 * (x - 1.3) ** 2 + 5)
    assert v is not None and v.x == pytest.approx(1.3) and v.loss == pytest.approx(5) and v.curvature > 0
    assert parabola_vertex(x, -((x - 1.3) ** 2)) is None
    assert parabola_vertex([1.0, 1.0, 2.0], [1.0, 2.0, 3.0]) is None  # fewer than 3 distinct x


def test_approach1_picks_the_minimum_run():
    df = _isoflop_table()
    opt = per_budget_optima(df, 1)
    for c, g in df.groupby("compute"):
        row = opt[opt["compute"] == c].iloc[0]
        assert row["n_opt"] == pytest.approx(g.loc[g["loss"].idxmin(), "n_params"])
        assert row["d_opt"] == pytest.approx(c / (6 * row["n_opt"]))


def test_approach2_recovers_the_law_exponent():
    fit = fit_isoflop(_isoflop_table(), 2)
    assert fit.n_law.a == pytest.approx(LAW.a, abs=0.01)
    assert fit.n_law.a + fit.d_law.a == pytest.approx(1.0, abs=1e-9)  # D = C/(6N)


def test_tokens_column_is_used_when_not_c_over_6n():
    df = _isoflop_table()
    df["tokens"] = df["compute"] / (10 * df["n_params"])  # e.g. exact FLOPs per token = 10·N
    opt = per_budget_optima(df, 2)
    assert np.allclose(opt["d_opt"], opt["compute"] / (10 * opt["n_opt"]), rtol=1e-6)


def test_power_law_exact_and_errors():
    x = np.array([1e18, 1e19, 1e20])
    law = fit_power_law(x, 3.0 * x**0.47)
    assert law.a == pytest.approx(0.47) and law.k == pytest.approx(3.0)
    with pytest.raises(ValueError, match="> 0"):
        fit_power_law([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="distinct"):
        fit_power_law([1.0, 1.0], [1.0, 2.0])


def test_too_few_budgets_is_an_actionable_error():
    df = _isoflop_table()
    with pytest.raises(ValueError, match="need 2 or more"):
        fit_isoflop(df[df["compute"] == 1e18], 2)


def test_huber_and_gradient():
    r = np.array([-0.01, -5e-4, 0.0, 5e-4, 0.02])
    v, g = huber(r, 1e-3)
    assert np.allclose(v, [1e-3 * (0.01 - 5e-4), 0.5 * 25e-8, 0, 0.5 * 25e-8, 1e-3 * (0.02 - 5e-4)])
    assert np.allclose(g, [-1e-3, -5e-4, 0, 5e-4, 1e-3])
    rng = np.random.default_rng(0)
    n, d = rng.uniform(17, 23, 50), rng.uniform(19, 26, 50)
    logl = np.log(LAW.loss(np.exp(n), np.exp(d))) + rng.normal(0, 0.01, 50)
    theta = LAW.theta() + 0.05
    _, grad = objective(theta, n, d, logl)
    eps = 1e-7
    num = [
        (
            objective(theta + eps * np.eye(5)[i], n, d, logl)[0]
            - objective(theta - eps * np.eye(5)[i], n, d, logl)[0]
        )
        / (2 * eps)
        for i in range(5)
    ]
    assert np.allclose(grad, num, rtol=1e-5, atol=1e-9)


def test_fit_input_errors():
    with pytest.raises(ValueError, match="equal lengths"):
        fit_chinchilla([1e6] * 6, [1e9] * 5, [3.0] * 6)
    with pytest.raises(ValueError, match="losses must be finite and > 0"):
        fit_chinchilla([1e6] * 6, [1e9] * 6, [3.0] * 5 + [0.0])


def test_bootstrap_on_noise_free_data_is_degenerate_at_the_truth():
    n, d = np.meshgrid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e8, 1e12, 6))
    n, d = n.ravel(), d.ravel()
    boots = bootstrap_chinchilla(n, d, LAW.loss(n, d), n_boot=5, seed=1)
    for b in boots:
        assert b.E == pytest.approx(LAW.E, rel=1e-3) and b.alpha == pytest.approx(LAW.alpha, abs=1e-3)


def test_bootstrap_isoflop_intervals_cover_point_estimate():
    df = _isoflop_table(noise=0.01)
    boot = bootstrap_isoflop(df, 2, [1e23], n_boot=50, seed=0)
    point = fit_isoflop(df, 2).n_law(1e23)
    lo, hi = np.percentile(boot["n_opt"], [2.5, 97.5])
    assert lo < point < hi


def test_analysis_summary_shape():
    s = analyze_table(_isoflop_table(noise=0.005), name="synthetic", n_boot=20)
    frame = predictions_frame(s)
    assert set(frame["approach"]) == {1, 2, 3}
    assert {"n_opt_lo", "n_opt_hi", "loss_lo", "loss_hi"} <= set(frame.columns)
    assert (frame["n_opt_lo"] <= frame["n_opt_hi"]).all()
    assert s["approaches"]["3"]["params"]["alpha"] == pytest.approx(LAW.alpha, abs=0.05)


def test_read_table_formats(tmp_path):
    df = pd.DataFrame({"parameters": [1e6, 2e6], "compute_budget": [1e18, 1e18], "final_loss": [3.0, 2.9]})
    df.to_json(tmp_path / "t.json", orient="records")
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    for name in ("t.json", "t.csv", "t.jsonl"):
        t = read_table(tmp_path / name)
        assert list(t["tokens"]) == pytest.approx([1e18 / 6e6, 1e18 / 12e6])
    with pytest.raises(ValueError, match="needs columns"):
        canonical(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(FileNotFoundError, match="not found"):
        read_table(tmp_path / "missing.csv")


@needs_shared
def test_stored_tables():
    epoch = load_epoch_table()
    assert len(epoch) == 240 and epoch["loss"].max() < 3.5
    iso = load_isoflops_table()
    assert len(iso) == 72 and iso["compute"].nunique() == 9


@needs_shared
def test_isoflops_table_lies_on_a_law():
    """Approach 3 on the CS336 isoFLOP table finds a law with (near) zero residuals: the table is synthetic."""
    iso = load_isoflops_table()
    fit = fit_chinchilla(iso["n_params"], iso["tokens"], iso["loss"])
    resid = np.log(fit.params.loss(iso["n_params"], iso["tokens"])) - np.log(iso["loss"])
    assert np.abs(resid).max() < 1e-6
    assert fit.params.E == pytest.approx(2.69, rel=1e-4) and fit.params.alpha == pytest.approx(0.34, abs=1e-4)
