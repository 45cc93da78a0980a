"""Synthetic pytest-benchmark documents for the store / regression / report tests."""

from __future__ import annotations

from typing import Any

import numpy as np


def bench_entry(fullname: str, data: list[float], group: str | None = None, impl: str = "lmfs",
                **extra: float) -> dict[str, Any]:
    a = np.asarray(data, dtype=float)
    return {
        "group": group,
        "name": fullname.split("::")[-1],
        "fullname": fullname,
        "params": None,
        "param": None,
        "extra_info": {"impl": impl, **extra},
        "options": {},
        "stats": {
            "min": float(a.min()), "max": float(a.max()), "mean": float(a.mean()),
            "stddev": float(a.std(ddof=1)) if a.size > 1 else 0.0, "rounds": int(a.size),
            "median": float(np.median(a)), "iqr": float(np.subtract(*np.percentile(a, [75, 25]))),
            "q1": float(np.percentile(a, 25)), "q3": float(np.percentile(a, 75)), "ops": float(1 / a.mean()),
            "data": [float(x) for x in a], "iterations": 1,
        },
    }


def bench_doc(entries: list[dict[str, Any]], machine_id: str = "cpu-test-2c", commit: str | None = "a" * 40,
              dirty: bool = False, when: str = "2026-01-01T00:00:00+00:00") -> dict[str, Any]:
    return {
        "machine_info": {"machine_id": machine_id, "node": "test", "cpu": {"brand_raw": "Test CPU"}},
        "commit_info": {"id": commit, "dirty": dirty} if commit else {"error": "not a git repo"},
        "benchmarks": entries,
        "datetime": when,
        "version": "5.2.3",
    }


def rounds(median: float, n: int = 15, noise: float = 0.03, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(median * np.exp(rng.normal(0.0, noise, n)))
