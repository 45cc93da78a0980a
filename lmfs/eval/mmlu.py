"""MMLU by log-likelihood of the answer letter.

The prompt is the classic one: "The following are multiple choice questions (with answers) about <subject>."
then ``shots`` solved questions from the subject's dev split, then the question with its four options and
"Answer:". The prediction is the letter among " A", " B", " C", " D" with the highest next-token log-probability
(each letter is one token in the tokenizers used here; otherwise the letter's full continuation is scored).

The few-shot prefix is the same for every question of a subject, so its keys/values are computed once per
subject and reused: each question rewinds the KV cache to the end of the prefix and feeds only its own tokens.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from lmfs.align.stats import accuracy_summary
from lmfs.eval.data import LETTERS, load_mmlu, mmlu_subjects
from lmfs.eval.results import ResultsFile
from lmfs.nn.functional import log_softmax


def _fmt_subject(subject: str) -> str:
    return subject.replace("_", " ")


def format_question(q: dict[str, Any], with_answer: bool) -> str:
    text = q["question"].strip() + "\n" + "".join(f"{L}. {o}\n" for L, o in zip(LETTERS, q["options"], strict=True))
    return text + ("Answer: " + q["answer"] + "\n\n" if with_answer else "Answer:")


def prefix_text(subject: str, shots: list[dict[str, Any]]) -> str:
    head = f"The following are multiple choice questions (with answers) about {_fmt_subject(subject)}.\n\n"
    return head + "".join(format_question(s, True) for s in shots)


def letter_tokens(tok: Any) -> tuple[list[int], list[int]]:
    """The id of each answer letter after "Answer:", and the ids that come before it in every case (empty for
    BPE tokenizers where " A" is one token; the space for a character-level one)."""
    encoded = [list(tok.encode(" " + L)) for L in LETTERS]
    lead = encoded[0][:-1]
    if any(e[:-1] != lead or len(e) != len(lead) + 1 for e in encoded):
        raise ValueError(f"the tokenizer encodes the answer letters as {encoded}; letter scoring needs each to be "
                         "a shared prefix plus one token")
    return [e[-1] for e in encoded], lead


@torch.no_grad()
def letter_scores(model: Any, tokenizer: Any, prefix_ids: list[int], question_ids: list[list[int]],
                  letter_ids: list[int]) -> list[list[float]]:
    """Log-probabilities of each letter token after prefix + question, for each question."""
    model.eval()
    n_max = len(prefix_ids) + max(len(q) for q in question_ids)
    cache = model.new_kv_cache(batch_size=1, max_len=n_max)
    if prefix_ids:
        model(torch.tensor([prefix_ids]), kv_cache=cache)
    scores = []
    for q in question_ids:
        cache.length = len(prefix_ids)
        logits = model(torch.tensor([q]), kv_cache=cache)[0, -1].float()
        lp = log_softmax(logits)
        scores.append([float(lp[i]) for i in letter_ids])
    return scores


def run_mmlu(
    lm: Any,
    out_dir: str | Path,
    *,
    per_subject: int | None = 10,
    shots: int = 5,
    subjects: list[str] | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    from lmfs.atomic import write_json_atomic

    subjects = subjects or mmlu_subjects()
    out = Path(out_dir)
    results = ResultsFile(out / "examples.jsonl", fresh=fresh)
    tok = lm.tokenizer
    letter_ids, lead = letter_tokens(tok)
    context = lm.model.config.context_length
    started, n_new, skipped = time.perf_counter(), 0, 0
    all_questions = {s: load_mmlu(s, "test")[: per_subject or None] for s in subjects}
    total = sum(len(v) for v in all_questions.values())
    bar = tqdm(total=total, desc=f"mmlu {shots}-shot", disable=not progress)
    for subject in subjects:
        questions = all_questions[subject]
        todo = [q for q in questions if not results.done(q["id"])]
        bar.update(len(questions) - len(todo))
        if not todo:
            continue
        shots_list = load_mmlu(subject, "dev")[:shots]
        prefix = tok.encode(prefix_text(subject, shots_list))
        q_ids = [tok.encode(format_question(q, False)) + lead for q in todo]
        while shots_list and len(prefix) + max(len(x) for x in q_ids) > context:
            shots_list = shots_list[:-1]  # fewer shots rather than a truncated prompt
            prefix = tok.encode(prefix_text(subject, shots_list))
        rows = []
        fits = [(q, ids) for q, ids in zip(todo, q_ids, strict=True) if len(prefix) + len(ids) <= context]
        for q, ids in zip(todo, q_ids, strict=True):
            if len(prefix) + len(ids) > context:
                rows.append({"id": q["id"], "subject": subject, "skipped": "prompt longer than the context",
                             "correct": False})
                skipped += 1
        if fits:
            scores = letter_scores(lm.model, tok, prefix, [ids for _, ids in fits], letter_ids)
            for (q, _), s in zip(fits, scores, strict=True):
                pred = LETTERS[max(range(4), key=lambda i: s[i])]
                rows.append({"id": q["id"], "subject": subject, "gold": q["answer"], "predicted": pred,
                             "correct": pred == q["answer"], "letter_logprobs": [round(x, 4) for x in s],
                             "shots": len(shots_list)})
        results.add(rows)
        n_new += len(todo)
        bar.update(len(todo))
    bar.close()
    elapsed = time.perf_counter() - started
    rows = [r for s in subjects for q in all_questions[s] if (r := results.rows.get(q["id"]))]
    by_subject = {}
    for s in subjects:
        rs = [r for r in rows if r["subject"] == s]
        by_subject[s] = accuracy_summary([bool(r.get("correct")) for r in rs])
    subj_acc = [v["accuracy"] for v in by_subject.values() if v["n"]]
    summary = {
        "task": "mmlu", "model": lm.name, "shots": shots, "per_subject": per_subject, "subjects": len(subjects),
        "scoring": "answer-letter log-likelihood", **accuracy_summary([bool(r.get("correct")) for r in rows]),
        "macro_accuracy": sum(subj_acc) / len(subj_acc) if subj_acc else None,
        "skipped_long_prompts": sum(1 for r in rows if "skipped" in r),
        "chance": 0.25, "by_subject": by_subject,
        "this_call": {"questions": n_new, "seconds": round(elapsed, 2),
                      "questions_per_s": n_new / elapsed if elapsed > 0 and n_new else None},
    }
    write_json_atomic(out / "summary.json", summary)
    return summary
