"""The evaluation sets in the shared data folder: GSM8K (JSONL) and MMLU (headerless CSVs per subject)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from lmfs.paths import shared_data

LETTERS = "ABCD"


def gsm8k_gold(answer: str) -> str:
    """The reference number of a GSM8K solution: the text after ``####``, commas removed."""
    if "####" not in answer:
        raise ValueError(f"GSM8K answer has no '####' line: {answer[-80:]!r}")
    return answer.split("####")[-1].strip().replace(",", "")


def load_gsm8k(split: str = "test", path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """GSM8K problems as dicts with ``id``, ``question``, ``answer`` (full solution) and ``gold``."""
    src = Path(path) if path else shared_data("eval", "gsm8k", f"{split}.jsonl")
    if not src.is_file():
        raise FileNotFoundError(f"GSM8K file not found: {src}")
    out = []
    with open(src, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                out.append({"id": f"{split}-{len(out)}", "question": rec["question"], "answer": rec["answer"],
                            "gold": gsm8k_gold(rec["answer"])})
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{src}:{lineno}: malformed GSM8K row ({type(exc).__name__}: {exc})") from None
    return out


def mmlu_dir() -> Path:
    return shared_data("eval", "mmlu")


def mmlu_subjects(root: str | os.PathLike | None = None) -> list[str]:
    folder = Path(root or mmlu_dir()) / "test"
    subjects = sorted(p.name[: -len("_test.csv")] for p in folder.glob("*_test.csv"))
    if not subjects:
        raise FileNotFoundError(f"no MMLU test CSVs in {folder}")
    return subjects


def load_mmlu(subject: str, split: str = "test", root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Questions of one subject: ``id``, ``subject``, ``question``, ``options`` (4), ``answer`` (letter)."""
    src = Path(root or mmlu_dir()) / split / f"{subject}_{split}.csv"
    if not src.is_file():
        raise FileNotFoundError(f"MMLU file not found: {src}")
    out = []
    with open(src, encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh), 1):
            if len(row) != 6 or row[5].strip() not in LETTERS:
                raise ValueError(f"{src}:{lineno}: expected question, 4 options, answer letter; got {row!r:.120}")
            out.append({"id": f"{subject}-{split}-{lineno - 1}", "subject": subject, "question": row[0],
                        "options": row[1:5], "answer": row[5].strip()})
    return out
