"""The report's data section: the funnel of each stored pipeline run (documents and bytes after every step,
drops by reason), per-step precision/recall against the synthetic crawl's ground truth, examples of what each
filter removed, and the quality classifier's held-out metrics.

Reads ``reports/data/data/pipeline_<name>.json`` (``lmfs data run CONFIG --truth truth.jsonl --report NAME``)
and ``quality_model.json`` (``lmfs data train-quality``). Returns None when neither exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfs.reporting import Section, escape, note, table_html


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.3f}"


def _run_html(name: str, run: dict[str, Any]) -> str:
    import pandas as pd

    rows = []
    for s in run["steps"]:
        rows.append({
            "step": s["name"], "docs in": s["in_docs"], "docs out": s["out_docs"],
            "MB out": round(s["out_bytes"] / 1e6, 3),
            "kept %": round(100 * s["out_docs"] / s["in_docs"], 1) if s["in_docs"] else None,
            "dropped (reason: n)": ", ".join(f"{k}: {v}" for k, v in sorted(s["dropped"].items())),
            "counters": ", ".join(f"{k}: {v}" for k, v in sorted(s.get("counters", {}).items())),
        })
    parts = [f"<h3>Run {escape(name)}</h3>",
             note(f"{len(run['inputs'])} input shards ({', '.join(run['inputs'][:6])}{' …' if len(run['inputs']) > 6 else ''}), "
                  f"executor {run['executor'].get('kind')}, {run['documents_out']} documents out in "
                  f"{run.get('seconds', 0):.1f} s; output sha256 in manifest.json."),
             table_html(pd.DataFrame(rows))]
    ev = run.get("evaluation")
    if ev:
        prs = [{"step": r["step"], "target kinds": r["target"], "reached": r["reached"], "dropped": r["dropped"],
                "meant for it": r["meant"], "precision": _fmt(r["precision"]), "recall": _fmt(r["recall"])}
               for r in ev["steps"] if r.get("target")]
        gq = ev.get("gopher+quality")
        if gq:
            prs.append({"step": "gopher+quality", "target kinds": "gopher+quality", "reached": None,
                        "dropped": gq["dropped"], "meant for it": gq["meant"], "precision": _fmt(gq["precision"]),
                        "recall": _fmt(gq["recall"])})
        o = ev["overall"]
        prs.append({"step": "kept (clean pages)", "target kinds": "keep", "reached": None, "dropped": None,
                    "meant for it": o["should_keep"], "precision": _fmt(o["precision"]), "recall": _fmt(o["recall"])})
        parts += [note("Precision / recall against the synthetic crawl's ground truth (the real CC pages have none "
                       "and are left out): precision = dropped and meant for this step / dropped by it; recall = "
                       "dropped / meant for it, among the pages that reached the step."),
                  table_html(pd.DataFrame(prs))]
    ex = []
    for s in run["steps"]:
        for reason, items in sorted(s.get("examples", {}).items()):
            for it in items[:1]:
                ex.append(f"<li><b>{escape(s['name'])}</b> / {escape(reason)} — <code>{escape(it['id'])}</code>: "
                          f"{escape(' '.join(it['text'].split())[:200])}</li>")
    if ex:
        parts.append("<details><summary>What each filter removed (one example per reason)</summary><ul>"
                     + "".join(ex) + "</ul></details>")
    return "".join(parts)


def section(reports_dir: Path) -> Section | None:
    folder = Path(reports_dir) / "data" / "data"
    runs = {p.stem.removeprefix("pipeline_"): _load(p) for p in sorted(folder.glob("pipeline_*.json"))}
    runs = {k: v for k, v in runs.items() if v}
    quality = _load(folder / "quality_model.json")
    if not runs and not quality:
        return None
    parts = [note("Crawl filtering: Resiliparse extraction, fastText lid.176, the shipped profanity-check model "
                  "for harmful content, a fastText quality classifier, Gopher rules, MinHash and exact-line dedup; "
                  "one resumable per-shard pipeline on local processes or Ray.")]
    for name, run in runs.items():
        parts.append(_run_html(name, run))
    if quality:
        import pandas as pd

        rows = [{"held-out set": k, "n": v["n"], "accuracy": round(v["accuracy"], 4),
                 "precision (wiki)": round(v["precision_wiki"], 4), "recall (wiki)": round(v["recall_wiki"], 4)}
                for k, v in quality["held_out"].items()]
        parts += ["<h3>Quality classifier (wiki vs cc)</h3>",
                  note(f"Positives: {quality['positives']}. Negatives: {quality['negatives']}."),
                  table_html(pd.DataFrame(rows))]
    return Section(id="data", title="Data: crawl filtering", html="".join(parts), order=70)
