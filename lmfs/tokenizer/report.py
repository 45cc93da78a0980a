"""The tokenizer's report section: the Gutenberg 10K tokenizer's costs and its compression next to GPT-2's.

Reads ``reports/data/tokenizer/gutenberg-10k.json`` (written when the walkthrough artifacts are built); returns
None when it is absent or unreadable.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmfs.harness.report import Section, escape, note, table_html


def section(reports_dir: Path) -> Section | None:
    path = Path(reports_dir) / "data" / "tokenizer" / "gutenberg-10k.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        comp = data["compression_valid"]
        train = data["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    import pandas as pd

    rows = [
        {
            "tokenizer": name,
            "vocab size": v["vocab_size"],
            "tokens": v["tokens"],
            "bytes / token": v["bytes_per_token"],
        }
        for name, v in comp.items()
    ]
    steps = [
        {
            "step": "train (vocab 10,000)",
            "seconds": train.get("total_s"),
            "detail": f"pre-tokenize {train.get('pretokenize_s')} s, merges {train.get('merge_s')} s; "
            f"peak RSS {train.get('peak_rss_mb')} MB (largest worker {train.get('peak_worker_rss_mb')} MB)",
        },
    ]
    for key, label in (
        ("encode_train", "encode gutenberg_train.txt"),
        ("encode_valid", "encode gutenberg_valid.txt"),
    ):
        e = data.get(key)
        if e:
            steps.append(
                {
                    "step": label,
                    "seconds": e.get("seconds"),
                    "detail": f"{e.get('tokens'):,} tokens, {e.get('mb_per_s')} MB/s, {e.get('dtype')}",
                }
            )
    body = (
        note(
            "Compression on the Gutenberg validation split (higher bytes/token = fewer tokens for the same text)."
        )
        + table_html(pd.DataFrame(rows))
        + note(f"Building the walkthrough artifacts on {data.get('machine', 'this machine')}:")
        + table_html(pd.DataFrame(steps))
        + "".join(f"<pre>{escape(c)}</pre>" for c in data.get("commands", []))
    )
    return Section(id="tokenizer", title="Tokenizer: Gutenberg 10K BPE", html=body, order=20)
