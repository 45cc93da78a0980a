"""The report's scaling section: isoFLOP curves, fitted frontiers, parametric contours, prediction tables with
bootstrap intervals, the CPU sweep and the simulator strategy.

Reads ``reports/data/scaling/`` (committed: ``fit_epoch.json``, ``fit_isoflops.json``, ``sweep_cpu.csv``,
``sweep_cpu_fit.json``, ``simulator_strategy.json``; written by ``lmfs scaling fit|sweep|simulate --out``) and,
for the isoFLOP curves, the shared isoFLOP table when it is there. Returns None when none of it exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfs.reporting import Section, data_provenance, note, svg_figure, table_html

PUBLISHED = {
    "Chinchilla (Hoffmann et al. 2022)": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
    "Epoch refit (Besiroglu et al. 2024)": {
        "E": 1.8172,
        "A": 482.01,
        "B": 2085.43,
        "alpha": 0.3478,
        "beta": 0.3658,
    },
}


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _ci(row: dict[str, Any], key: str) -> str:
    v = row.get(key)
    if v is None:
        return ""
    lo, hi = row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if lo is None or hi is None:
        return f"{v:.4g}"
    return f"{v:.4g} [{lo:.3g}, {hi:.3g}]"


def prediction_table(summaries: list[dict[str, Any]]) -> Any:
    import pandas as pd

    rows = []
    for s in summaries:
        for ap, res in s["approaches"].items():
            if "error" in res:
                rows.append({"table": s["table"], "approach": ap, "N_opt ∝ C^a": res["error"]})
                continue
            a = f"{res['a']:.4f}" + (f" [{res['a_lo']:.3f}, {res['a_hi']:.3f}]" if "a_lo" in res else "")
            for p in res["predictions"]:
                rows.append(
                    {
                        "table": s["table"],
                        "approach": ap,
                        "N_opt ∝ C^a": a,
                        "budget C": f"{p['compute']:.0e}",
                        "N_opt": _ci(p, "n_opt"),
                        "D_opt": _ci(p, "d_opt"),
                        "loss": _ci(p, "loss"),
                    }
                )
    return pd.DataFrame(rows)


def coefficient_table(fit: dict[str, Any]) -> Any:
    import pandas as pd

    res = fit["approaches"]["3"]
    ours = {k: f"{v:.4g}" for k, v in res["params"].items()}
    if "ci" in res:
        ours = {
            k: f"{res['params'][k]:.4g} [{lo:.4g}, {hi:.4g}]"
            for k, (lo, hi) in res["ci"].items()
            if k in ours
        }
    rows = [
        {
            "fit": f"lmfs ({fit['rows']} rows, {fit['n_boot']} resamples)",
            **ours,
            "a = β/(α+β)": f"{res['a']:.4f}",
        }
    ]
    for name, p in PUBLISHED.items():
        rows.append(
            {
                "fit": name,
                **{k: f"{v:.4g}" for k, v in p.items()},
                "a = β/(α+β)": f"{p['beta'] / (p['alpha'] + p['beta']):.4f}",
            }
        )
    return pd.DataFrame(rows)


def isoflop_figure(df: Any, title: str, budget_fmt: str = "{:.0e}") -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lmfs.scaling.isoflop import parabola_vertex

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    budgets = sorted(df["compute"].unique())
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(budgets)))
    for c, col in zip(budgets, colors, strict=True):
        g = df[df["compute"] == c].sort_values("n_params")
        x = np.log(g["n_params"].to_numpy(dtype=float))
        ax.scatter(g["n_params"], g["loss"], color=col, s=14, label=budget_fmt.format(c))
        v = parabola_vertex(x, g["loss"].to_numpy(dtype=float))
        if v is not None:
            xs = np.linspace(x.min() - 0.2, x.max() + 0.2, 100)
            p2 = v.curvature
            ax.plot(np.exp(xs), v.loss + p2 * (xs - v.x) ** 2, color=col, lw=1)
            ax.scatter([np.exp(v.x)], [v.loss], color=col, marker="*", s=80, edgecolor="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(title="budget C (FLOPs)", fontsize=7, ncol=2)
    return fig


def frontier_figure(
    fits: list[dict[str, Any]],
    title: str = "Fitted frontiers N_opt(C), extrapolated (95% bootstrap intervals)",
) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"1": ("o", "--"), "2": ("s", "-"), "3": ("^", ":")}
    shown: list[float] = []
    for fit in fits:
        budgets = [o["compute"] for r in fit["approaches"].values() for o in r.get("optima", [])]
        for ap, res in fit["approaches"].items():
            if "error" in res:
                continue
            marker, ls = styles[ap]
            preds = res["predictions"]
            shown.extend(p["n_opt"] for p in preds)
            lo_c = min(budgets) if budgets else 1e18
            if res.get("optima"):
                cs = np.array([o["compute"] for o in res["optima"]])
                ns = np.array([o["n_opt"] for o in res["optima"]])
                ax.scatter(cs, ns, marker=marker, s=14)
                shown.extend(ns)
            grid = np.geomspace(lo_c, max(p["compute"] for p in preds), 50)
            if ap == "3":
                from lmfs.scaling.parametric import ChinchillaParams

                line = ChinchillaParams(**res["params"]).allocation(grid)[0]
            else:
                line = res["k_n"] * grid ** res["a"]
            ax.plot(grid, line, ls=ls, lw=1.2, label=f"{fit['table']}, Approach {ap} (a={res['a']:.3f})")
            for p in preds:
                if "n_opt_lo" in p:
                    ax.errorbar(
                        [p["compute"]],
                        [p["n_opt"]],
                        yerr=[[p["n_opt"] - p["n_opt_lo"]], [p["n_opt_hi"] - p["n_opt"]]],
                        fmt=marker,
                        ms=4,
                        capsize=3,
                        color=ax.lines[-1].get_color(),
                    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    if shown:  # wild bootstrap intervals (a poorly determined exponent) must not hide the estimates
        ax.set_ylim(min(shown) / 10, max(shown) * 10)
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("compute-optimal N")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def contour_figure(fit: dict[str, Any], data: Any | None) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lmfs.scaling.parametric import ChinchillaParams

    p = ChinchillaParams(**fit["approaches"]["3"]["params"])
    n = np.geomspace(1e7, 1e12, 200)
    d = np.geomspace(1e9, 1e14, 200)
    nn, dd = np.meshgrid(n, d)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    cs = ax.contour(
        nn,
        dd,
        p.loss(nn, dd),
        levels=np.round(np.linspace(p.E + 0.05, p.E + 1.5, 12), 2),
        cmap="viridis",
        linewidths=0.8,
    )
    ax.clabel(cs, fontsize=6)
    c_line = np.geomspace(1e18, 1e26, 50)
    n_opt, d_opt = p.allocation(c_line)
    ax.plot(n_opt, d_opt, "r-", lw=1.5, label=f"compute-optimal (a={p.a:.3f})")
    for c in (1e19, 1e21, 1e23, 1e25):
        ax.plot(n, c / (6 * n), color="0.6", lw=0.6, ls="--")
        ax.annotate(f"C={c:.0e}", (n[20], c / (6 * n[20])), fontsize=6, color="0.4")
    if data is not None:
        ax.scatter(data["n_params"], data["tokens"], s=5, color="k", alpha=0.5, label="runs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(n[0], n[-1])
    ax.set_ylim(d[0], d[-1])
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D")
    ax.set_title(f"L(N, D) contours, Approach 3 on {fit['table']}")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def _safe_table(loader: Any) -> Any:
    try:
        return loader()
    except (OSError, ValueError):
        return None


def section(reports_dir: Path) -> list[Section] | None:
    data_dir = Path(reports_dir) / "data" / "scaling"
    local_dir = Path(reports_dir) / "local" / "scaling"  # the main job's fresh fits (ignored), when there

    def fit_path(name: str) -> Path:
        return local_dir / name if (local_dir / name).is_file() else data_dir / name

    epoch = _load_json(fit_path("fit_epoch.json"))
    iso = _load_json(fit_path("fit_isoflops.json"))
    sweep_fit = _load_json(data_dir / "sweep_cpu_fit.json")
    strategy = _load_json(data_dir / "simulator_strategy.json")
    sweep_csv = data_dir / "sweep_cpu.csv"
    if not any((epoch, iso, sweep_fit, strategy, sweep_csv.exists())):
        return None

    from lmfs.scaling.tables import load_epoch_table, load_isoflops_table, read_table

    parts: list[str] = [
        data_provenance(fit_path(name), name, ["lmfs/scaling"], machine="n/a (seeded fit)",
                        threads="n/a (not a timing)")
        for name in ("fit_epoch.json", "fit_isoflops.json", "sweep_cpu_fit.json", "simulator_strategy.json")
        if fit_path(name).is_file()
    ]
    fits = [f for f in (epoch, iso) if f]
    if fits:
        parts.append(
            note(
                "Chinchilla Approach 1 (minimum run per budget), Approach 2 (parabola in ln N per "
                "budget) and Approach 3 (L = E + A/N^α + B/D^β, summed Huber δ=1e-3 on log residuals, "
                "L-BFGS-B from Chinchilla's grid) on the stored tables; intervals are 95% bootstrap "
                "percentiles over runs. Approaches 1 and 2 extrapolate the loss as a plain power law "
                "in C, which has no irreducible term and so runs below Approach 3's."
            )
        )
        parts.append(table_html(prediction_table(fits)))
    if epoch and "3" in epoch["approaches"]:
        parts.append("<h3>Approach 3 on the Epoch table vs the published fits</h3>")
        parts.append(table_html(coefficient_table(epoch)))
        parts.append(
            note(
                "E matches Epoch's 1.8172 to four digits; A, B, α, β differ by 1-3% along the strongly "
                "correlated A-α and B-β directions. The objective at our point is lower than at "
                "Epoch's published point (whose gradient is not zero), so the difference is the "
                "optimizer stopping point, not the data; both lie well inside the bootstrap intervals."
            )
        )
    iso_table = _safe_table(load_isoflops_table)
    if iso_table is not None:
        parts.append(svg_figure(isoflop_figure(iso_table, "CS336 isoFLOP table: Approach-2 parabolas")))
    if fits:
        parts.append(svg_figure(frontier_figure(fits)))
    if epoch and "3" in epoch["approaches"]:
        parts.append(svg_figure(contour_figure(epoch, _safe_table(load_epoch_table))))
    sections = [Section(id="scaling", title="Scaling laws", html="\n".join(parts), order=60)]

    sweep_parts: list[str] = []
    sweep = _safe_table(lambda: read_table(sweep_csv)) if sweep_csv.exists() else None
    if sweep is not None and len(sweep):
        sweep_parts.append(
            note(
                f"{len(sweep)} real lmfs runs on Gutenberg (10k BPE vocab) at {sweep['compute'].nunique()} budgets of "
                "exact training FLOPs (lm_head and attention included); N counts non-embedding parameters; loss "
                "is the validation loss at the end of each run (cosine schedule sized to the run)."
            )
        )
        sweep_parts.append(svg_figure(isoflop_figure(sweep, "CPU sweep of lmfs models: isoFLOP curves")))
        cols = [
            c
            for c in ("run_id", "compute", "n_params", "n_params_total", "tokens", "steps", "loss", "wall_s")
            if c in sweep
        ]
        sweep_parts.append(table_html(sweep[cols]))
    if sweep_fit and "3" in sweep_fit["approaches"] and "params" in sweep_fit["approaches"]["3"]:
        r3 = sweep_fit["approaches"]["3"]
        p3 = r3["params"]
        interval = f" [{r3['a_lo']:.2f}, {r3['a_hi']:.2f}]" if "a_lo" in r3 else ""
        sweep_parts.append(
            note(
                f"Approach 3 on the sweep: E {p3['E']:.3g}, A {p3['A']:.3g}, B {p3['B']:.3g}, α {p3['alpha']:.3f}, "
                f"β {p3['beta']:.3f}; N_opt ∝ C^{r3['a']:.3f}{interval}. At these budgets (tens of thousands to a "
                "million tokens per run) the best run is the smallest 2-layer model at every budget, so the isoFLOP "
                "minima (Approaches 1, 2) are poorly determined; see reports/data/scaling/README.md."
            )
        )
    if sweep_fit:
        sweep_parts.append(svg_figure(frontier_figure([sweep_fit], "CPU sweep: fitted N_opt(C)")))
        sweep_parts.append(table_html(prediction_table([sweep_fit])))
        for ap, res in sweep_fit["approaches"].items():
            for n_ in res.get("notes", []):
                sweep_parts.append(note(f"Approach {ap}: {n_}"))
    if strategy:
        s = strategy["summary"]
        sweep_parts.append("<h3>Training-API simulator: the IsoFLOP strategy vs the known truth</h3>")
        sweep_parts.append(
            note(
                f"Budget spent {s['spent']:.3g} FLOPs in {int(s['runs'])} isoFLOP runs (plus learning-rate probes). "
                f"Predicted N_opt at {s['target']:.0e} FLOPs: {s['n_opt_pred']:.4g} vs true {s['n_opt_true']:.4g} "
                f"(ratio {s['n_ratio']:.3f}); predicted loss {s['loss_pred']:.4f} vs true {s['loss_true']:.4f} "
                f"({100 * s['loss_error']:+.2f}%)."
            )
        )
    if sweep_parts:
        sections.append(
            Section(
                id="scaling-sweep", title="Scaling sweep and simulator", html="\n".join(sweep_parts), order=61
            )
        )
    return sections
