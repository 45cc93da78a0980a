"""The bench store: layout, merge of repeated runs, malformed files, concurrent writers, machine ids."""

from __future__ import annotations

import json
import multiprocessing as mp
import warnings
from pathlib import Path

import numpy as np
import pytest

from lmfs.harness.machine import gpu_slug, machine_id, slug
from lmfs.harness.store import StoreError, load_store, merge_runs, recompute_stats, save_run
from tests.harness.synthetic import bench_doc, bench_entry, rounds


def test_save_run_layout_and_metadata(tmp_path: Path) -> None:
    doc = bench_doc([bench_entry("b.py::test_x", rounds(1.0))], commit="0123456789abcdef" * 2, dirty=True)
    path = save_run(doc, tmp_path)
    assert path == tmp_path / "bench" / "cpu-test-2c" / "0123456789ab-dirty.json"
    stored = json.loads(path.read_text())
    assert stored["lmfs"]["machine_id"] == "cpu-test-2c" and stored["lmfs"]["commit"] == "0123456789ab-dirty"
    assert stored["benchmarks"][0]["stats"]["data"] == doc["benchmarks"][0]["stats"]["data"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind


def test_save_run_needs_machine_and_commit(tmp_path: Path) -> None:
    doc = bench_doc([bench_entry("b.py::test_x", rounds(1.0))], commit=None)
    with pytest.raises(StoreError, match="--commit"):
        save_run(doc, tmp_path)
    assert save_run(doc, tmp_path, commit="feedbeef").name == "feedbeef.json"
    doc["commit_info"] = {"id": "unversioned", "dirty": False}  # what pytest-benchmark writes outside git
    with pytest.raises(StoreError, match="--commit"):
        save_run(doc, tmp_path)
    doc["machine_info"].pop("machine_id")
    with pytest.raises(StoreError, match="--machine"):
        save_run(doc, tmp_path, commit="feedbeef")
    with pytest.raises(StoreError, match="not a pytest-benchmark JSON"):
        save_run({"foo": 1}, tmp_path, "m", "c")


def test_same_commit_twice_merges_rounds(tmp_path: Path) -> None:
    first = bench_doc([bench_entry("b.py::test_x", [1.0, 2.0, 3.0]), bench_entry("b.py::test_only_first", [5.0])])
    second = bench_doc([bench_entry("b.py::test_x", [4.0, 5.0]), bench_entry("b.py::test_only_second", [7.0])],
                       when="2026-01-02T00:00:00+00:00")
    save_run(first, tmp_path)
    path = save_run(second, tmp_path)
    stored = json.loads(path.read_text())
    by = {b["fullname"]: b for b in stored["benchmarks"]}
    assert sorted(by) == ["b.py::test_only_first", "b.py::test_only_second", "b.py::test_x"]
    assert by["b.py::test_x"]["stats"]["data"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert by["b.py::test_x"]["stats"]["median"] == 3.0 and by["b.py::test_x"]["stats"]["rounds"] == 5
    assert len(stored["lmfs"]["runs"]) == 2
    assert stored["datetime"] == "2026-01-02T00:00:00+00:00"


def test_merge_without_raw_data_keeps_the_newer_run() -> None:
    old = bench_doc([bench_entry("t", [1.0, 1.0])])
    new = bench_doc([bench_entry("t", [2.0, 2.0])])
    del new["benchmarks"][0]["stats"]["data"]
    merged = merge_runs(old, new)
    assert merged["benchmarks"][0]["stats"]["median"] == 2.0


def test_recompute_stats_matches_numpy() -> None:
    data = list(np.random.default_rng(1).exponential(1.0, 101))
    s = recompute_stats(data)
    assert s["median"] == pytest.approx(float(np.median(data)))
    assert s["mean"] == pytest.approx(float(np.mean(data)))
    assert s["rounds"] == 101 and s["min"] == min(data) and s["max"] == max(data)


def test_malformed_files_are_skipped_with_a_warning(tmp_path: Path) -> None:
    save_run(bench_doc([bench_entry("t", [1.0, 2.0])]), tmp_path)
    mdir = tmp_path / "bench" / "cpu-test-2c"
    (mdir / "broken.json").write_text("{not json")
    (mdir / "wrong.json").write_text(json.dumps({"benchmarks": [{"fullname": "x", "stats": {}}]}))
    (mdir / ".hidden.json.tmp").write_text("partial")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs, problems = load_store(tmp_path)
    assert sorted(Path(str(w.message).split(":")[0].split()[-1]).name for w in caught) == ["broken.json", "wrong.json"]
    assert [r.commit for r in runs] == ["a" * 12]
    assert len(problems) == 2 and any("wrong.json" in p and "stats.median" in p for p in problems)


def _writer(args: tuple[str, int]) -> None:
    root, i = args
    doc = bench_doc([bench_entry("b.py::test_x", [float(i)] * 3)], commit=("c" if i % 2 else "d") * 40)
    save_run(doc, Path(root))


def test_concurrent_writers_never_corrupt_or_lose_rounds(tmp_path: Path) -> None:
    n = 12
    with mp.get_context("fork").Pool(4) as pool:
        pool.map(_writer, [(str(tmp_path), i) for i in range(n)])
    runs, problems = load_store(tmp_path)
    assert problems == []
    data = {r.commit: r.doc["benchmarks"][0]["stats"]["data"] for r in runs}
    assert sorted(data) == ["c" * 12, "d" * 12]
    assert sorted(data["c" * 12]) == sorted(float(i) for i in range(n) for _ in range(3) if i % 2)
    assert sorted(data["d" * 12]) == sorted(float(i) for i in range(n) for _ in range(3) if not i % 2)
    assert not [p for p in (tmp_path / "bench" / "cpu-test-2c").iterdir() if p.suffix != ".json"]


def test_machine_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMFS_MACHINE_ID", raising=False)
    assert machine_id("NVIDIA H100 80GB HBM3") == "cuda-h100"
    assert machine_id("NVIDIA H200") == "cuda-h200"
    assert gpu_slug("NVIDIA GeForce RTX 4090") == "geforce-rtx-4090"
    assert slug("Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz") == "intel-xeon-platinum-8480"
    cpu = machine_id(use_cuda=False)
    assert cpu.startswith("cpu-") and cpu.endswith("c")
    monkeypatch.setenv("LMFS_MACHINE_ID", "my-box")
    assert machine_id() == "my-box"
