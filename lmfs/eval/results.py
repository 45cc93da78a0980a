"""Per-example results as JSON lines that survive a kill: each row is appended and flushed as soon as it is
known, a restarted evaluation skips the ids already there, and a torn last line (the process died while
writing it) is dropped on reopen rather than breaking the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lmfs.atomic import write_text_atomic


class ResultsFile:
    def __init__(self, path: str | os.PathLike, *, fresh: bool = False) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        self.dropped = 0
        if fresh and self.path.exists():
            self.path.unlink()
        if self.path.exists():
            good: list[str] = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    self.dropped += 1
                    continue
                if not isinstance(row, dict) or "id" not in row:
                    self.dropped += 1
                    continue
                self.rows[str(row["id"])] = row
                good.append(line)
            if self.dropped:
                write_text_atomic(self.path, "".join(g + "\n" for g in good))
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def done(self, example_id: str) -> bool:
        return str(example_id) in self.rows

    def add(self, rows: list[dict[str, Any]]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.rows[str(row["id"])] = row
            fh.flush()
            os.fsync(fh.fileno())
