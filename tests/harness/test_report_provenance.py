"""Every section says where its numbers come from: the provenance line, the stale check against git history,
committed vs local data, and the harness sections that use them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lmfs.harness.sections import benchmarks, history
from lmfs.harness.store import save_run
from lmfs.reporting import code_changed_since, data_dirs, provenance, staleness
from tests.harness.synthetic import bench_doc, bench_entry, rounds


def test_provenance_always_names_commit_date_machine_threads() -> None:
    line = provenance(source="reports/data/x.json", commit="abc123", date="2026-12-03T14:00:00+00:00",
                      machine="cpu-test-2c", threads=2, extra="load 0.5")
    assert "reports/data/x.json" in line and "commit abc123" in line and "2026-12-03 14:00:00" in line
    assert "machine cpu-test-2c" in line and "2 threads" in line and "load 0.5" in line
    bare = provenance()
    assert bare.count("not recorded") == 4  # commit, date, machine, threads: unknown is said, not omitted
    assert "1, 2 threads" in provenance(threads=[2, 1, 2])
    assert "&lt;b&gt;" in provenance(source="<b>")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.py").write_text("1\n")
    (tmp_path / "other.txt").write_text("x\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_staleness_follows_the_code_history(repo: Path) -> None:
    measured = _git(repo, "rev-parse", "--short=12", "HEAD")
    assert code_changed_since(["code"], commit=measured, root=repo) == []
    assert staleness("x.json", ["code"], commit=measured, root=repo) == ""
    (repo / "other.txt").write_text("y\n")  # a change elsewhere does not make it stale
    _git(repo, "commit", "-q", "-am", "unrelated")
    assert code_changed_since(["code"], commit=measured + "-dirty", root=repo) == []
    (repo / "code" / "a.py").write_text("2\n")
    _git(repo, "commit", "-q", "-am", "faster code")
    changes = code_changed_since(["code"], commit=measured, root=repo)
    assert changes is not None and len(changes) == 1 and changes[0].endswith("faster code")
    box = staleness("x.json", ["code"], commit=measured, root=repo)
    assert "STALE" in box and "faster code" in box
    # no commit git knows: judged by date; neither: says it cannot tell
    assert "STALE" in staleness("x.json", ["code"], commit="f" * 12, date="2000-01-01", root=repo)
    assert "cannot be checked" in staleness("x.json", ["code"], root=repo)


def test_data_dirs_lists_committed_then_local(tmp_path: Path) -> None:
    assert data_dirs(tmp_path, "profile") == []
    (tmp_path / "local" / "profile").mkdir(parents=True)
    (tmp_path / "data" / "profile").mkdir(parents=True)
    assert [k for k, _ in data_dirs(tmp_path, "profile")] == ["committed", "local"]


def test_benchmark_sections_show_load_and_split_thread_counts(tmp_path: Path) -> None:
    for i, (when, load) in enumerate([("2026-01-01T00:00:00", None),
                                      ("2026-01-02T00:00:00", {"start": [5.0, 4, 3], "end": [6.0, 5, 4],
                                                               "cpus": 2})]):
        entries = [
            bench_entry("b.py::t1", rounds(0.01 * (1.4 if i else 1), seed=i), group="g1", threads=1),
            bench_entry("b.py::p1", rounds(0.008 * (1.4 if i else 1), seed=9 + i), group="g1", impl="torch",
                        threads=1),
            bench_entry("b.py::t2", rounds(0.02 * (1.4 if i else 1), seed=20 + i), group="g2", threads=2),
            bench_entry("b.py::p2", rounds(0.02 * (1.4 if i else 1), seed=30 + i), group="g2", impl="torch",
                        threads=2),
        ]
        doc = bench_doc(entries, commit=f"{i}" * 40, when=when)
        if load:
            doc["load"] = load
        save_run(doc, tmp_path)
    bench = benchmarks(tmp_path)
    assert bench is not None
    assert "lmfs vs peers · 1 thread" in bench.html and "lmfs vs peers · 2 threads" in bench.html
    assert "UNDER LOAD" in bench.html and "Taken under load" in bench.html
    assert "commit 111111111111" in bench.html and "2026-01-02 00:00:00" in bench.html
    hist = history(tmp_path)
    assert hist is not None
    assert "not recorded" in hist.html and "YES" in hist.html  # the runs table: old run without load, new one
    assert "<td>REGRESSION</td>" not in hist.html  # lmfs and its peer both 1.4x slower: the box, not the code
    assert "<td>same</td>" in hist.html


def test_report_of_the_stored_runs_has_provenance_everywhere(tmp_path: Path) -> None:
    """Every harness section body carries a provenance line once it has data."""
    save_run(bench_doc([bench_entry("b.py::t", rounds(0.01), group="g"),
                        bench_entry("b.py::p", rounds(0.01, seed=3), group="g", impl="torch")]), tmp_path)
    (tmp_path / "grade").mkdir()
    (tmp_path / "grade" / "x.json").write_text(json.dumps({
        "name": "x", "units": {}, "total": {"earned": 0, "possible": 0, "failed": 0}, "tests": [],
        "collect_errors": [], "lmfs_commit": "abc", "created": "2026-01-01T00:00:00"}))
    from lmfs.harness.sections import grades

    for sec in (grades(tmp_path), benchmarks(tmp_path), history(tmp_path)):
        assert sec is not None and 'class="provenance"' in sec.html, sec.title


def test_dirty_only_when_tracked_source_differs(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmfs.harness.machine import git_commit

    monkeypatch.delenv("LMFS_COMMIT", raising=False)
    (repo / "reports" / "data").mkdir(parents=True)
    (repo / "reports" / "data" / "t.json").write_text("{}\n")
    (repo / "README.md").write_text("docs\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "data and docs")
    assert git_commit(repo)[1] is False
    (repo / "reports" / "data" / "t.json").write_text('{"new": 1}\n')  # a command rewrote committed data
    (repo / "README.md").write_text("more docs\n")
    (repo / "runs").mkdir()
    (repo / "runs" / "out.txt").write_text("generated\n")  # untracked output
    (repo / "scratch.py").write_text("untracked\n")
    head, dirty = git_commit(repo)
    assert head and dirty is False
    (repo / "code" / "a.py").write_text("changed\n")  # the code that runs differs from HEAD
    assert git_commit(repo)[1] is True
    assert git_commit(repo / "code")[1] is True  # from a subfolder too
