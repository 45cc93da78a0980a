"""Where a run's numbers go: a JSONL log (one flushed line per record) and, when installed, TensorBoard."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from lmfs.atomic import write_text_atomic


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a metrics JSONL file (a torn last line, from a crash, is skipped)."""
    records = []
    p = Path(path)
    if not p.is_file():
        return records
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(path: str | os.PathLike, last_step: int) -> None:
    """Drop records after ``last_step`` (written after the checkpoint a run resumes from), atomically."""
    p = Path(path)
    if not p.is_file():
        return
    kept = [r for r in read_metrics(p) if r.get("step", 0) <= last_step]
    write_text_atomic(p, "".join(json.dumps(r) + "\n" for r in kept))


class MetricsLog:
    """Appends records to ``out_dir/metrics.jsonl`` and mirrors numeric fields to TensorBoard scalars."""

    def __init__(self, out_dir: str | os.PathLike, tensorboard: bool = True) -> None:
        self.path = Path(out_dir) / "metrics.jsonl"
        self._fh = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional (pip install lmfs[train])
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(log_dir=str(Path(out_dir) / "tb"))

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._fh.write(json.dumps(clean) + "\n")
        self._fh.flush()
        if self._tb is not None and "step" in record:
            for key, value in record.items():
                if (
                    key not in ("step", "kind")
                    and isinstance(value, (int, float))
                    and not isinstance(value, bool)
                ):
                    self._tb.add_scalar(f"{record.get('kind', 'train')}/{key}", value, record["step"])

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
