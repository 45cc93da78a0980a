"""Perplexity on a token file: non-overlapping windows of ``seq_len + 1`` tokens, mean next-token NLL over every
predicted token, ``exp`` of it; the interval is a bootstrap over windows (a window is the unit that is
resampled, since tokens inside one are not independent)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lmfs.align.stats import bootstrap_mean_interval
from lmfs.eval.results import ResultsFile
from lmfs.nn.functional import log_softmax


def run_ppl(
    lm: Any,
    tokens_path: str | Path,
    out_dir: str | Path,
    *,
    seq_len: int = 256,
    max_windows: int | None = 64,
    batch_size: int = 4,
    dtype: str = "uint16",
    fresh: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    from lmfs.atomic import write_json_atomic
    from lmfs.train.data import load_tokens

    arr = load_tokens(tokens_path, dtype)
    vocab = lm.model.config.vocab_size
    seq_len = min(seq_len, lm.model.config.context_length)
    n_windows = (len(arr) - 1) // seq_len
    if n_windows < 1:
        raise ValueError(f"{tokens_path}: {len(arr)} tokens is too few for one window of {seq_len + 1}")
    if max_windows:
        n_windows = min(n_windows, max_windows)
    out = Path(out_dir)
    results = ResultsFile(out / "examples.jsonl", fresh=fresh)
    todo = [w for w in range(n_windows) if not results.done(f"w{w}")]
    started = time.perf_counter()
    lm.model.eval()
    for start in tqdm(range(0, len(todo), batch_size), desc="ppl", disable=not progress):
        ws = todo[start : start + batch_size]
        chunk = np.stack([np.asarray(arr[w * seq_len : w * seq_len + seq_len + 1], dtype=np.int64) for w in ws])
        if chunk.max() >= vocab:
            raise ValueError(f"{tokens_path}: token id {int(chunk.max())} >= the model's vocab {vocab}; "
                             "was the file written with this model's tokenizer?")
        x = torch.from_numpy(chunk)
        with torch.no_grad():
            lp = log_softmax(lm.model(x[:, :-1]).float())
            nll = -lp.gather(-1, x[:, 1:, None]).squeeze(-1)
        results.add([{"id": f"w{w}", "tokens": seq_len, "nll_sum": float(nll[i].sum())} for i, w in enumerate(ws)])
    rows = [results.rows[f"w{w}"] for w in range(n_windows)]
    per_window = [r["nll_sum"] / r["tokens"] for r in rows]
    mean_nll = sum(r["nll_sum"] for r in rows) / sum(r["tokens"] for r in rows)
    lo, hi = bootstrap_mean_interval(per_window)
    summary = {"task": "ppl", "model": lm.name, "tokens_file": str(tokens_path), "seq_len": seq_len,
               "windows": n_windows, "tokens": n_windows * seq_len, "mean_nll": mean_nll,
               "perplexity": math.exp(mean_nll), "ci95_low": math.exp(lo), "ci95_high": math.exp(hi),
               "ci_method": "bootstrap over windows", "seconds": round(time.perf_counter() - started, 2)}
    write_json_atomic(out / "summary.json", summary)
    return summary
