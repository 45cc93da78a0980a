"""The eval unit's report section: the stored evaluation summaries under reports/data/eval/<run>/summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from lmfs.reporting import Section, data_provenance, escape, note


def _fmt(s: dict) -> str:
    acc = s.get("accuracy")
    if s.get("task") == "ppl":
        return f"{s['perplexity']:.2f} [{s['ci95_low']:.2f}, {s['ci95_high']:.2f}]"
    return f"{acc:.3f} [{s['ci95_low']:.3f}, {s['ci95_high']:.3f}]" if acc is not None else "—"


def section(reports_dir: Path) -> list[Section] | None:
    """The evaluations' section and the alignment one (:func:`lmfs.align.report.section`)."""
    from lmfs.align.report import section as align_section

    out = [s for s in (align_section(reports_dir), eval_section(reports_dir)) if s is not None]
    return out or None


def eval_section(reports_dir: Path) -> Section | None:
    root = Path(reports_dir) / "data" / "eval"
    files = sorted(root.glob("*/summary.json"))
    if not files:
        return None
    rows, heads = [], ""
    for f in files:
        s = json.loads(f.read_text(encoding="utf-8"))
        heads += data_provenance(f, f.parent.name, ["lmfs/eval"], machine=s.get("machine"),
                                 threads=s.get("threads"), extra=f"load average {s.get('loadavg', 'not recorded')}")
        setting = (f"{s.get('shots')}-shot, {s.get('per_subject')} per subject × {s.get('subjects')} subjects"
                   if s.get("task") == "mmlu" else f"{s.get('shots')}-shot, greedy, ≤{s.get('max_tokens')} tokens"
                   if s.get("task") == "gsm8k" else f"{s.get('windows')} windows of {s.get('seq_len')}")
        rate = (s.get("this_call") or {}).get("problems_per_s") or (s.get("this_call") or {}).get("questions_per_s")
        rows.append(f"<tr><td>{escape(s.get('model'))}</td><td>{escape(s.get('task'))}</td><td>{escape(setting)}"
                    f"</td><td>{s.get('n', s.get('windows'))}</td><td>{escape(_fmt(s))}</td>"
                    f"<td>{'' if rate is None else f'{rate:.3f}'}</td></tr>")
    table = ("<table class='table'><tr><th>model</th><th>task</th><th>setting</th><th>n</th>"
             "<th>accuracy / perplexity [95% CI]</th><th>items/s (last call)</th></tr>" + "".join(rows) + "</table>")
    body = heads + table + note(
        "Accuracy intervals are Wilson 95% score intervals; perplexity intervals a bootstrap over windows. "
        "MMLU chance is 0.25. Rates are from the call that finished the run on a shared 2-core CPU (niced), "
        "so they are indicative only; timing comparisons live in the benchmarks.")
    return Section("eval", "Evaluations (GSM8K, MMLU, perplexity)", body, order=75)
