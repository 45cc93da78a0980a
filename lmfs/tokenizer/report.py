"""The tokenizer's report section: the Gutenberg 10K tokenizer's costs and its compression next to GPT-2's.

Reads ``reports/data/tokenizer/gutenberg-10k.json`` (written when the walkthrough artifacts are built); returns
None when it is absent or unreadable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfs.reporting import Section, data_provenance, escape, note, table_html


def section(reports_dir: Path) -> Section | None:
    body = _walkthrough(Path(reports_dir) / "data" / "tokenizer" / "gutenberg-10k.json")
    targets = _targets(Path(reports_dir))
    if targets is not None:
        body += note(
            "Speed targets: lmfs and its peer timed in the same run on the same machine; each row from the newest "
            "stored run that has that benchmark:"
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
            f"peak RSS {train.get('peak_rss_mb')} MB (largest worker {train.get('peak_worker_rss_mb')} MB); "
            f"{train.get('backend', 'python')} backend",
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
                    "detail": f"{e.get('tokens'):,} tokens, {e.get('mb_per_s')} MB/s, {e.get('dtype')}, "
                    f"{e.get('backend', 'python')} backend",
                }
            )
    return (
        data_provenance(path, "the walkthrough build record", ["lmfs/tokenizer"], date=data.get("date"),
                        machine=data.get("machine"), threads=train.get("threads"))
        + note(
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
    """One row per target, each from the newest stored run (by the run's own timestamp, not file times, which a
    fresh clone resets) on any machine that measured both lmfs and the peer; None when no run has any.

    Slow groups (the 100 MB ones) are only in some runs, so rows can come from different runs; the run column
    says which."""
    runs = []
    for path in (reports_dir / "bench").glob("*/*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = {
                (b["group"], b["extra_info"].get("impl")): b
                for b in data.get("benchmarks", [])
                if str(b.get("group", "")).startswith("tokenizer-")
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if entries:
            runs.append((str(data.get("datetime", "")), path, entries))
    runs.sort(key=lambda r: (r[0], r[1].name), reverse=True)
    rows = []
    for group, peer, limit, what in TARGETS:
        for _when, path, entries in runs:
            ours, theirs = entries.get((group, "lmfs")), entries.get((group, peer))
            try:
                ratio = ours["stats"]["median"] / theirs["stats"]["median"]
            except (TypeError, KeyError, ZeroDivisionError):
                continue
            rows.append(
                {
                    "target": what,
                    "lmfs / peer time": round(ratio, 3),
                    "met": "yes" if ratio <= limit else "no",
                    "lmfs backend": ours.get("extra_info", {}).get("backend", "python"),
                    "run": f"{path.parent.name}/{path.stem}",
                }
            )
            break
    if not rows:
        return None
    import pandas as pd

    return pd.DataFrame(rows)
