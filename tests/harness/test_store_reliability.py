"""The bench store under hostile conditions: writers with different temp folders, records of the wrong types,
odd machine ids and commits, the optional load record."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import warnings
from pathlib import Path

import pytest

from lmfs.cli import main
from lmfs.harness.store import StoreError, load_store, save_run, validate
from lmfs.paths import project_root
from tests.harness.synthetic import bench_doc, bench_entry, rounds


def _writer(args: tuple[str, int, str]) -> None:
    root, i, tmp = args
    os.environ["TMPDIR"] = tmp  # each writer its own temp folder: the lock must not live there
    import tempfile

    tempfile.tempdir = None
    doc = bench_doc([bench_entry("b.py::test_x", [float(i + 1)] * 3)], commit="e" * 40)
    save_run(doc, Path(root))


def test_writers_with_different_tmpdirs_lose_nothing(tmp_path: Path) -> None:
    n = 24
    tmps = []
    for i in range(n):
        (tmp_path / f"tmp{i}").mkdir()
        tmps.append(str(tmp_path / f"tmp{i}"))
    with mp.get_context("fork").Pool(6) as pool:
        pool.map(_writer, [(str(tmp_path / "reports"), i, tmps[i]) for i in range(n)])
    runs, problems = load_store(tmp_path / "reports")
    assert problems == [] and len(runs) == 1
    assert sorted(runs[0].doc["benchmarks"][0]["stats"]["data"]) == sorted(float(i + 1) for i in range(n) for _ in range(3))
    assert len(runs[0].doc["lmfs"]["runs"]) == n
    assert (tmp_path / "reports" / "bench" / ".lock").is_file(), "the lock lives in the store"


def _good() -> dict:
    return bench_doc([bench_entry("b.py::test_x", rounds(1.0))])


BAD = {
    "string rounds": lambda d: d["benchmarks"][0]["stats"].update(rounds="15"),
    "list extra_info": lambda d: d["benchmarks"][0].update(extra_info=["impl", "lmfs"]),
    "string median": lambda d: d["benchmarks"][0]["stats"].update(median="0.1"),
    "nan mean": lambda d: d["benchmarks"][0]["stats"].update(mean=float("nan")),
    "bool iterations": lambda d: d["benchmarks"][0]["stats"].update(iterations=True),
    "string data": lambda d: d["benchmarks"][0]["stats"].update(data="1,2,3"),
    "number group": lambda d: d["benchmarks"][0].update(group=3),
    "list machine_info": lambda d: d.update(machine_info=["x"]),
    "load of 2": lambda d: d.update(load={"start": [1.0, 2.0], "end": [1.0, 1.0, 1.0], "cpus": 2}),
    "load cpus 0": lambda d: d.update(load={"start": [1.0, 2.0, 3.0], "end": [1.0, 1.0, 1.0], "cpus": 0}),
    "load string": lambda d: d.update(load="busy"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_wrong_types_are_refused_on_write(tmp_path: Path, name: str) -> None:
    doc = _good()
    BAD[name](doc)
    with pytest.raises(StoreError, match="benchmark JSON"):
        save_run(doc, tmp_path)
    assert not (tmp_path / "bench").exists() or not list((tmp_path / "bench").rglob("*.json"))


def test_load_record_is_accepted_when_well_formed(tmp_path: Path) -> None:
    doc = _good()
    doc["load"] = {"start": [0.5, 1.0, 1.5], "end": [2.0, 1.2, 1.1], "cpus": 2}
    path = save_run(doc, tmp_path)
    assert json.loads(path.read_text())["load"]["cpus"] == 2
    validate({**_good(), "load": {"start": [0, 0, 0], "end": [0, 0, 0], "cpus": 16}}, "x")


def test_bad_files_are_skipped_on_read_and_never_crash_history(tmp_path: Path, capsys) -> None:
    save_run(_good(), tmp_path)
    mdir = tmp_path / "bench" / "cpu-test-2c"
    for i, name in enumerate(["string rounds", "list extra_info"]):
        doc = _good()
        BAD[name](doc)
        (mdir / f"{str(i + 1) * 12}.json").write_text(json.dumps(doc))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs, problems = load_store(tmp_path)
    assert [r.commit for r in runs] == ["a" * 12]
    assert any("111111111111.json" in p and "stats.rounds" in p for p in problems)
    assert any("222222222222.json" in p and "extra_info" in p for p in problems)
    assert len(caught) == 2
    assert main(["bench", "history", "--reports-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "111111111111.json" in out.err and "Traceback" not in out.err


@pytest.mark.parametrize("mid", ["<b>x</b>", "", " ", "cpu box", "../up", ".hidden", "a/b", "x" * 200])
def test_bad_machine_ids_are_refused(tmp_path: Path, mid: str) -> None:
    with pytest.raises(StoreError, match="bad machine id"):
        save_run(_good(), tmp_path, machine_id=mid)


@pytest.mark.parametrize("commit", ["", " ", "<script>", "abc def", "zzzz-not-a-rev", " abcd1234", "a..b"])
def test_bad_commits_are_refused(tmp_path: Path, commit: str) -> None:
    with pytest.raises(StoreError, match="bad commit"):
        save_run(_good(), tmp_path, commit=commit)


def test_commit_names_are_resolved_to_hashes(tmp_path: Path) -> None:
    root = project_root()
    if subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=root, capture_output=True).returncode != 0:
        pytest.skip("needs a git checkout with history")
    want = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert save_run(_good(), tmp_path, commit="HEAD~1").name == f"{want[:12]}.json"
    assert save_run(_good(), tmp_path, commit="HEAD~1-dirty").name == f"{want[:12]}-dirty.json"
    assert save_run(_good(), tmp_path, commit="ABCDEF12" .lower()).name == "abcdef12.json"
