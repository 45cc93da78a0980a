"""Collect finished alignment runs into ``reports/data/align/``: each run's summary and metrics (small JSON
files) and ``results.json`` with the stages (before SFT, after SFT, after RL) and a verdict on whether RL beat
SFT by more than the confidence interval of the difference."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from lmfs.atomic import write_json_atomic


def _diff_interval(a: dict[str, Any], b: dict[str, Any], z: float = 1.96) -> tuple[float, float, float]:
    """(b - a, low, high): normal interval of a difference of two independent proportions."""
    pa, pb, na, nb = a["heldout_accuracy"], b["heldout_accuracy"], a["n"], b["n"]
    diff = pb - pa
    half = z * math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    return diff, diff - half, diff + half


def _last_eval(d: Path) -> tuple[dict[str, Any], bool]:
    """The run's final held-out evaluation: from summary.json when it finished, else the last eval record in
    metrics.jsonl (a run stopped early); the flag says which."""
    if (d / "summary.json").is_file():
        return json.loads((d / "summary.json").read_text())["heldout_last"], True
    evals = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    return evals[-1], False


def export(sft_dir: str, rl_dirs: dict[str, str], dpo_dir: str | None, out: str | Path,
           settings: dict[str, str] | None = None) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sft = json.loads((Path(sft_dir) / "summary.json").read_text())
    stages = [{"stage": "before SFT (random init)", "run": Path(sft_dir).name, **sft["heldout_first"]},
              {"stage": "after SFT", "run": Path(sft_dir).name, **sft["heldout_last"]}]
    verdicts = []
    for label, d in rl_dirs.items():
        last, finished = _last_eval(Path(d))
        stages.append({"stage": f"after {label}", "run": Path(d).name, "finished": finished,
                       "setting": (settings or {}).get(label, ""), **last})
        diff, lo, hi = _diff_interval(sft["heldout_last"], last)
        verdicts.append(f"{label} − SFT = {diff:+.3f} (95% CI of the difference [{lo:+.3f}, {hi:+.3f}]): "
                        + ("beats SFT by more than the interval" if lo > 0 else
                           "does NOT beat SFT by more than the interval"))
    for d in [sft_dir, *rl_dirs.values(), *([dpo_dir] if dpo_dir else [])]:
        name = Path(d).name
        if (Path(d) / "summary.json").is_file():
            shutil.copyfile(Path(d) / "summary.json", out / f"{name}.summary.json")
        shutil.copyfile(Path(d) / "metrics.jsonl", out / f"{name}.metrics.jsonl")
    result: dict[str, Any] = {"stages": stages, "verdict": " | ".join(verdicts)}
    if dpo_dir:
        s = json.loads((Path(dpo_dir) / "summary.json").read_text())
        f, l = s["preference_first"], s["preference_last"]
        result["dpo"] = {"before": f["preference_accuracy"], "after": l["preference_accuracy"],
                         "before_ci": [f["ci95_low"], f["ci95_high"]], "after_ci": [l["ci95_low"], l["ci95_high"]],
                         "n": l["n"]}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result.update(machine="cpu-amd-epyc-2c", threads=1, commit=commit or None,
                  loadavg=" ".join(os.getloadavg().__repr__().strip("()").split(", ")))
    write_json_atomic(out / "results.json", result)
    return result
