"""The tokenizer's report section: the Gutenberg 10K tokenizer's costs and its compression next to GPT-2's.

Reads ``reports/data/tokenizer/gutenberg-10k.json`` (written when the walkthrough artifacts are built); returns
None when it is absent or unreadable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfs.harness.report import Section, escape, note, table_html


def section(reports_dir: Path) -> Section | None:
    body = _walkthrough(Path(reports_dir) / "data" / "tokenizer" / "gutenberg-10k.json")
    targets = _targets(Path(reports_dir))
    if targets is not None:
        body += note(
            "Issue 3's targets, from the newest stored benchmark run with tokenizer groups (same run, same machine):"
        )
        body += table_html(targets)
    if not body:
        return None
    return Section(id="tokenizer", title="Tokenizer: Gutenberg 10K BPE", html=body, order=20)


def _walkthrough(path: Path) -> str:
    """Compression and build costs of the walkthrough tokenizer; "" when the JSON is absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        comp = data["compression_valid"]
        train = data["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
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
    return (
        note(
            "Compression on the Gutenberg validation split (higher bytes/token = fewer tokens for the same text)."
        )
        + table_html(pd.DataFrame(rows))
        + note(f"Building the walkthrough artifacts on {data.get('machine', 'this machine')}:")
        + table_html(pd.DataFrame(steps))
        + "".join(f"<pre>{escape(c)}</pre>" for c in data.get("commands", []))
    )


#: (benchmark group, peer impl, target on lmfs time / peer time, what it means)
TARGETS = [
    ("tokenizer-train-10MB-vocab10k", "hf-tokenizers", 1.0, "training 10 MB: lmfs wall time ≤ 1.0× HF"),
    ("tokenizer-train-100MB-vocab10k", "hf-tokenizers", 1.0, "training 100 MB: lmfs wall time ≤ 1.0× HF"),
    ("tokenizer-encode-gpt2-single-thread", "tiktoken", 2.0, "encoding, one thread: ≥ 0.5× tiktoken's speed"),
    ("tokenizer-encode-file-gpt2", "tiktoken", 1.0, "whole file (5 MB), all cores: ≥ tiktoken single-thread"),
    (
        "tokenizer-encode-file-100MB-gpt2",
        "tiktoken",
        1.0,
        "whole file (100 MB), all cores: ≥ tiktoken single-thread",
    ),
]


def _targets(reports_dir: Path) -> Any:  # a pandas DataFrame or None
    """Target table from the newest ``reports/bench/*/*.json`` holding tokenizer benchmarks; None if none."""
    files = sorted((reports_dir / "bench").glob("*/*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            medians = {
                (b["group"], b["extra_info"].get("impl")): b["stats"]["median"]
                for b in data.get("benchmarks", [])
                if str(b.get("group", "")).startswith("tokenizer-")
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        rows = []
        for group, peer, limit, what in TARGETS:
            ours, theirs = medians.get((group, "lmfs")), medians.get((group, peer))
            if ours and theirs:
                ratio = ours / theirs
                rows.append(
                    {
                        "target": what,
                        "lmfs / peer time": round(ratio, 3),
                        "met": "yes" if ratio <= limit else "no",
                        "run": f"{path.parent.name}/{path.stem}",
                    }
                )
        if rows:
            import pandas as pd

            return pd.DataFrame(rows)
    return None
