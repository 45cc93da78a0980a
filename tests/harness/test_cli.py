"""The harness CLI end to end on a temporary reports folder: bench store, history, compare, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfs.cli import main
from tests.harness.synthetic import bench_doc, bench_entry, rounds


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    base = [bench_entry("b.py::test_fast", rounds(0.010, seed=1)), bench_entry("b.py::test_same", rounds(0.01, seed=2))]
    new = [bench_entry("b.py::test_fast", rounds(0.020, seed=3)), bench_entry("b.py::test_same", rounds(0.01, seed=4))]
    for name, doc in (("a", bench_doc(base, commit="a" * 40)), ("b", bench_doc(new, commit="b" * 40,
                                                                                when="2026-01-02T00:00:00"))):
        assert main(["bench", "store", str(_write(tmp_path / f"{name}.json", doc)), "--reports-dir",
                     str(tmp_path / "reports")]) == 0
    return tmp_path / "reports"


def test_compare_prints_ratios_and_flags(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["compare", "aaaa", "bbbb", "--reports-dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert "cpu-test-2c" in out and "REGRESSION" in out and "1 regression(s)" in out
    assert main(["compare", "aaaa", "bbbb", "--reports-dir", str(store), "--fail-on-regression"]) == 1


def test_compare_unknown_machine_and_commit(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "aaaa", "bbbb", "--machine", "cuda-h100", "--reports-dir", str(store)]) == 2
    assert "unknown machine_id 'cuda-h100'" in capsys.readouterr().err
    assert main(["compare", "aaaa", "cccc", "--reports-dir", str(store)]) == 2
    assert "pass --machine" in capsys.readouterr().err


def test_history_prints_table(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["bench", "history", "--reports-dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert "aaaaaaaaaaaa" in out and "bbbbbbbbbbbb" in out and "test_fast" in out
    assert "nan" not in out.lower()
    assert max(len(line) for line in out.splitlines()) <= 120  # fits a terminal
    assert main(["bench", "history", "--machine", "nope", "--reports-dir", str(store)]) == 2


def test_bench_store_rejects_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    assert main(["bench", "store", str(bad), "--reports-dir", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["bench", "store", str(tmp_path / "none.json"), "--reports-dir", str(tmp_path)]) == 2
    nomachine = bench_doc([bench_entry("t", [1.0])])
    nomachine["machine_info"] = {}
    assert main(["bench", "store", str(_write(tmp_path / "n.json", nomachine)), "--reports-dir", str(tmp_path)]) == 2
    assert "--machine" in capsys.readouterr().err
    assert main(["bench", "store", str(tmp_path / "n.json"), "--machine", "cuda-h100", "--reports-dir",
                 str(tmp_path)]) == 0
    assert (tmp_path / "bench" / "cuda-h100" / ("a" * 12 + ".json")).exists()


def test_report_command(store: Path) -> None:
    assert main(["report", "--reports-dir", str(store)]) == 0
    assert "Benchmark history" in (store / "index.html").read_text()


def test_bench_run_stores_a_run_with_machine_info_and_raw_rounds(tmp_path: Path) -> None:
    suite = Path(__file__).parent / "fixtures" / "bench_mini"
    reports = tmp_path / "reports"
    assert main(["bench", "run", "--suite", str(suite), "--reports-dir", str(reports), "--commit", "0123abcd"]) == 0
    files = list((reports / "bench").glob("*/0123abcd.json"))
    assert len(files) == 1 and files[0].parent.name.startswith(("cpu-", "cuda-"))
    doc = json.loads(files[0].read_text())
    assert doc["machine_info"]["machine_id"] == files[0].parent.name
    assert {"cpu_count", "torch", "python", "threads_pinned"} <= set(doc["machine_info"])
    impls = {b["extra_info"]["impl"]: b for b in doc["benchmarks"]}
    assert set(impls) == {"lmfs", "builtin-sum"} and len(impls["lmfs"]["stats"]["data"]) == 5
    assert main(["report", "--reports-dir", str(reports)]) == 0
    html = (reports / "index.html").read_text()
    assert "builtin-sum" in html and "tok/s" in html
