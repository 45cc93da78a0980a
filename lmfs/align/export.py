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


def heldout_correct(run_dir: str | Path) -> list[bool]:
    """Per-problem greedy correctness of a run's newest checkpoint on its task's held-out problems (the same
    decoding and verifier as the trainers' evaluation)."""
    import torch

    from lmfs.align import checkpoint as ackpt
    from lmfs.align.rewards import SafeReward, get_reward
    from lmfs.align.rollout import SamplingParams, generate
    from lmfs.align.tasks import make_task

    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "summary.json").read_text())["task"]
    task = make_task(cfg["name"], digits=cfg["digits"], heldout_size=cfg["heldout_size"], seed=cfg["seed"])
    lm = ackpt.load_lm(run_dir)
    params = SamplingParams(temperature=0.0, max_tokens=cfg.get("eval_max_tokens") or task.max_answer_chars + 1,
                            stop_token_ids=tuple(lm.stop_token_ids))
    with torch.no_grad():
        comps = generate(lm.model, lm.tokenizer, [p.prompt for p in task.heldout], params, max_batch=256,
                         use_engine=False)
    safe = SafeReward(get_reward(cfg["reward"]))
    out = []
    for c, p in zip(comps, task.heldout, strict=True):
        r = safe(c.text, p.answer)
        out.append(r is not None and r["reward"] == 1.0)
    return out


def paired_test(first: list[bool], second: list[bool]) -> dict[str, Any]:
    """Exact McNemar test of two models scored on the same problems (second vs first)."""
    from lmfs.align.stats import mcnemar_exact

    if len(first) != len(second):
        raise ValueError(f"paired test needs the same problems: {len(first)} vs {len(second)}")
    only_first = sum(1 for a, b in zip(first, second) if a and not b)
    only_second = sum(1 for a, b in zip(first, second) if b and not a)
    return {"n": len(first), "first_correct": sum(first), "second_correct": sum(second),
            "only_first": only_first, "only_second": only_second,
            "p_value": mcnemar_exact(only_first, only_second), "test": "exact McNemar, two-sided"}


def export(sft_dir: str, rl_dirs: dict[str, str], dpo_dir: str | None, out: str | Path,
           settings: dict[str, str] | None = None, *, paired: str | None = None,
           earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """``paired``: the label of one RL run to test against SFT problem by problem (both final checkpoints
    re-scored on the held-out set). ``earlier``: a previous results.json kept under ``earlier`` (its runs'
    stored metrics stay in ``out``)."""
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
    if paired is not None:
        a, b = heldout_correct(sft_dir), heldout_correct(rl_dirs[paired])
        result["paired"] = {"first": "after SFT", "second": f"after {paired}", **paired_test(a, b)}
        if sum(a) != round(sft["heldout_last"]["heldout_accuracy"] * len(a)):
            raise RuntimeError("re-scoring the SFT checkpoint does not reproduce its logged accuracy")
    if earlier is not None:
        result["earlier"] = {k: earlier[k] for k in ("stages", "verdict", "machine", "threads", "commit", "loadavg")
                             if k in earlier}
        if dpo_dir is None and "dpo" in earlier:
            result["dpo"] = earlier["dpo"]
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
