"""The align unit's report section: held-out accuracy before SFT, after SFT and after RL, DPO preference
accuracy, and the GRPO curves (reward, held-out accuracy, KL, entropy, clip fraction), from reports/data/align/."""

from __future__ import annotations

import json
from pathlib import Path

from lmfs.reporting import Section, data_provenance, escape, note, svg_figure


def _curves(metrics: list[dict], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roll = [r for r in metrics if r.get("kind") == "rollout"]
    ev = [r for r in metrics if r.get("kind") == "eval"]
    tr = [r for r in metrics if r.get("kind") == "train"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot([r["step"] for r in roll], [r["reward_mean"] for r in roll], lw=1, label="rollout reward (T=1)")
    axes[0].errorbar([r["step"] for r in ev], [r["heldout_accuracy"] for r in ev],
                     yerr=[[r["heldout_accuracy"] - r["ci95_low"] for r in ev],
                           [r["ci95_high"] - r["heldout_accuracy"] for r in ev]], fmt="o-", ms=3,
                     label="held-out accuracy (greedy)")
    axes[0].set_xlabel("optimizer update")
    axes[0].legend(fontsize=7)
    axes[1].plot([r["step"] for r in tr], [r["kl_ref"] for r in tr], lw=1, label="KL to the start (k3)")
    axes[1].plot([r["step"] for r in tr], [r["clip_fraction"] for r in tr], lw=1, label="clip fraction")
    axes[1].legend(fontsize=7)
    axes[2].plot([r["step"] for r in tr], [r["entropy"] for r in tr], lw=1, label="token entropy")
    axes[2].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return svg_figure(fig)


def section(reports_dir: Path) -> Section | None:
    """The alignment section (the report lists it through :func:`lmfs.eval.report.section`)."""
    root = Path(reports_dir) / "data" / "align"
    res = root / "results.json"
    if not res.is_file():
        return None
    r = json.loads(res.read_text(encoding="utf-8"))
    body = data_provenance(res, "results.json", ["lmfs/align"], machine=r.get("machine"), threads=r.get("threads"),
                           extra=f"load average {r.get('loadavg', 'not recorded')}")
    def stage_table(stages: list[dict]) -> str:
        rows = "".join(
            f"<tr><td>{escape(stage['stage'])}</td><td>{escape(stage.get('run', ''))}</td>"
            f"<td>{stage['heldout_accuracy']:.3f}</td><td>[{stage['ci95_low']:.3f}, {stage['ci95_high']:.3f}]</td>"
            f"<td>{stage.get('n', '')}</td><td>{escape(stage.get('setting', ''))}</td></tr>"
            for stage in stages)
        return ("<table class='table'><tr><th>stage</th><th>run</th><th>held-out accuracy</th><th>95% CI</th>"
                "<th>n</th><th>setting</th></tr>" + rows + "</table>")

    body += stage_table(r.get("stages", []))
    if r.get("verdict"):
        body += note(escape(r["verdict"]))
    if r.get("paired"):
        p = r["paired"]
        body += note(escape(
            f"Paired on the same {p['n']} held-out problems ({p['test']}): {p['first']} {p['first_correct']} "
            f"correct, {p['second']} {p['second_correct']}; right only before RL {p['only_first']}, right only "
            f"after RL {p['only_second']}, p = {p['p_value']:.2g}."))
    if r.get("earlier"):
        e = r["earlier"]
        body += note(escape("Earlier attempts (500 held-out problems, a different SFT start at 0.794; RL did "
                            "not beat SFT there: 20-60 updates per run; at learning rates >= 1.5e-4 accuracy fell, "
                            "at 5e-5 it did not move):"))
        body += stage_table(e.get("stages", []))
    if r.get("dpo"):
        d = r["dpo"]
        body += note(escape(f"DPO: held-out preference accuracy {d['before']:.3f} → {d['after']:.3f} "
                            f"(95% CI after [{d['after_ci'][0]:.3f}, {d['after_ci'][1]:.3f}], n={d['n']})."))
    for m in [root / "addition2k-grpo.metrics.jsonl", root / "addition-grpo.metrics.jsonl"]:
        if not m.is_file():
            continue
        recs = [json.loads(x) for x in m.read_text(encoding="utf-8").splitlines() if x.strip()]
        if any(x.get("kind") == "rollout" for x in recs):
            body += _curves(recs, m.name)
    return Section("align", "Alignment (SFT, GRPO, DPO, expert iteration)", body, order=76)
