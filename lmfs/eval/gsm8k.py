"""GSM8K: greedy generation, the last number of the output (``lmfs.align.parsing.parse_gsm8k_response``)
compared with the reference after ``####``.

Prompts: zero-shot wraps the question in the model's chat template (an instruction to reason and end with
"The answer is N"); k-shot puts ``k`` solved training problems before the question as plain text
("Question: ... / Answer: ... The answer is N."), and generation stops at the next "Question:".
A prediction is correct when it equals the reference as a number (``18`` and ``18.00`` match; ``18.5`` does not).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lmfs.align.parsing import parse_gsm8k_response
from lmfs.align.rollout import SamplingParams, generate
from lmfs.align.stats import accuracy_summary
from lmfs.eval.data import load_gsm8k
from lmfs.eval.results import ResultsFile

INSTRUCTION = "\nSolve the problem step by step. End with a line 'The answer is N.' where N is a number."


def answers_match(predicted: str | None, gold: str) -> bool:
    if predicted is None:
        return False
    try:
        return float(predicted) == float(gold)
    except ValueError:
        return predicted.strip() == gold.strip()


def shot_text(example: dict[str, Any]) -> str:
    solution = example["answer"].split("####")[0].strip()
    solution = "\n".join(line for line in solution.splitlines())
    import re

    solution = re.sub(r"<<[^>]*>>", "", solution)  # the calculator annotations
    return f"Question: {example['question']}\nAnswer: {solution}\nThe answer is {example['gold']}.\n\n"


def build_prompt(lm: Any, example: dict[str, Any], shots: list[dict[str, Any]]) -> str:
    if not shots:
        return lm.chat(example["question"] + INSTRUCTION)
    return "".join(shot_text(s) for s in shots) + f"Question: {example['question']}\nAnswer:"


def run_gsm8k(
    lm: Any,
    out_dir: str | Path,
    *,
    limit: int | None = 300,
    shots: int = 0,
    batch_size: int = 8,
    max_tokens: int = 256,
    split: str = "test",
    fresh: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``lm`` (a :class:`lmfs.align.models.LoadedModel`) on the first ``limit`` problems; rows go to
    ``out_dir/examples.jsonl`` as they finish, the summary to ``out_dir/summary.json``."""
    from lmfs.atomic import write_json_atomic

    problems = load_gsm8k(split)
    if limit:
        problems = problems[:limit]
    shot_examples = load_gsm8k("train")[:shots] if shots else []
    out = Path(out_dir)
    results = ResultsFile(out / "examples.jsonl", fresh=fresh)
    todo = [p for p in problems if not results.done(p["id"])]
    stops = ("Question:",) if shots else ()
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, stop=stops,
                            stop_token_ids=tuple(lm.stop_token_ids))
    context = lm.model.config.context_length
    started, new_tokens = time.perf_counter(), 0
    bar = tqdm(total=len(problems), initial=len(problems) - len(todo), desc=f"gsm8k {shots}-shot",
               disable=not progress)
    skipped = 0
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        prompts = [lm.tokenizer.encode(build_prompt(lm, p, shot_examples)) for p in chunk]
        rows, keep = [], []
        for p, ids in zip(chunk, prompts, strict=True):
            if len(ids) + 1 >= context:
                rows.append({"id": p["id"], "skipped": "prompt longer than the context", "prompt_tokens": len(ids),
                             "correct": False})
                skipped += 1
            else:
                keep.append((p, ids))
        comps = generate(lm.model, lm.tokenizer, [ids for _, ids in keep], params, max_batch=batch_size)
        for (p, ids), c in zip(keep, comps, strict=True):
            pred = parse_gsm8k_response(c.text)
            new_tokens += len(c.token_ids)
            rows.append({"id": p["id"], "gold": p["gold"], "predicted": pred,
                         "correct": answers_match(pred, p["gold"]), "prompt_tokens": len(ids),
                         "output_tokens": len(c.token_ids), "finish_reason": c.finish_reason, "output": c.text})
        results.add(rows)
        bar.update(len(chunk))
    bar.close()
    elapsed = time.perf_counter() - started
    rows = [results.rows[p["id"]] for p in problems if results.done(p["id"])]
    summary = {
        "task": "gsm8k", "model": lm.name, "split": split, "shots": shots, "max_tokens": max_tokens,
        "decoding": "greedy", **accuracy_summary([bool(r.get("correct")) for r in rows]),
        "skipped_long_prompts": sum(1 for r in rows if "skipped" in r),
        "no_number_in_output": sum(1 for r in rows if "skipped" not in r and r.get("predicted") is None),
        "hit_max_tokens": sum(1 for r in rows if r.get("finish_reason") == "length"),
        "this_call": {"problems": len(todo), "seconds": round(elapsed, 2), "new_tokens": new_tokens,
                      "problems_per_s": len(todo) / elapsed if elapsed > 0 and todo else None},
    }
    write_json_atomic(out / "summary.json", summary)
    return summary
