"""Precision and recall of each pipeline step against a synthetic crawl's ground truth.

For a step ``S`` whose target kinds are ``T`` (``truth["target"]``: ``extract``, ``language``, ``harmful``,
``gopher+quality``, ``minhash``), among the ground-truth documents that **reached** ``S`` (not dropped by an
earlier step): precision = dropped by S and meant for it / dropped by S; recall = dropped by S and meant for it
/ meant for it. Steps sharing a target (``gopher`` and ``quality``) are scored together too. Overall:
precision/recall of "kept" for the documents that should be kept (``clean``). Documents not in the truth (the
real Common Crawl pages) are left out of every ratio.
"""

from __future__ import annotations

from typing import Any

__all__ = ["step_precision_recall"]

STEP_TARGETS = {"extract": "extract", "language": "language", "harmful": "harmful", "gopher": "gopher+quality",
                "quality": "gopher+quality", "minhash": "minhash"}


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def step_precision_recall(summary: dict[str, Any], truth: dict[str, dict[str, Any]]) -> dict[str, Any]:
    dropped_at: dict[str, str] = {}  # doc id -> step name
    order = [s["name"] for s in summary["steps"]]
    for s in summary["steps"]:
        for ids in s["dropped_ids"].values():
            for i in ids:
                dropped_at.setdefault(i, s["name"])
    rows = []
    reached = set(truth)
    for name in order:
        step_type = name  # default steps are named by their type
        target = STEP_TARGETS.get(step_type)
        dropped = {i for i in reached if dropped_at.get(i) == name}
        if target is not None:
            meant = {i for i in reached if truth[i].get("target") == target}
            tp = len(dropped & meant)
            rows.append({"step": name, "target": target, "reached": len(reached), "dropped": len(dropped),
                         "meant": len(meant), "true_drops": tp, "precision": _ratio(tp, len(dropped)),
                         "recall": _ratio(tp, len(meant))})
        else:
            rows.append({"step": name, "target": None, "reached": len(reached), "dropped": len(dropped)})
        reached -= dropped
    # gopher + quality together
    combined = None
    names = [r for r in rows if r.get("target") == "gopher+quality"]
    if len(names) == 2:
        first = names[0]
        meant = first["meant"]
        dropped = sum(r["dropped"] for r in names)
        tp = sum(r["true_drops"] for r in names)
        combined = {"step": "gopher+quality", "dropped": dropped, "meant": meant, "true_drops": tp,
                    "precision": _ratio(tp, dropped), "recall": _ratio(tp, meant)}
    keep = {i for i, t in truth.items() if t["expected"] == "keep"}
    kept = reached
    overall = {"should_keep": len(keep), "kept": len(kept), "kept_and_should": len(kept & keep),
               "precision": _ratio(len(kept & keep), len(kept)), "recall": _ratio(len(kept & keep), len(keep))}
    wrongly = {}
    for i in keep - kept:
        step = dropped_at.get(i, "?")
        wrongly[step] = wrongly.get(step, 0) + 1
    return {"steps": rows, "gopher+quality": combined, "overall": overall, "clean_dropped_by": wrongly}
