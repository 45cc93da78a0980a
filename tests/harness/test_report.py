"""The HTML report: renders with an empty and a full store, survives broken providers and malformed files,
and is self-contained (no scripts, no external resources)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lmfs.harness.render import ReportError, build_report, collect_sections
from lmfs.harness.store import save_run
from tests.harness.synthetic import bench_doc, bench_entry, rounds

HARNESS = ["lmfs.harness.sections:grades", "lmfs.harness.sections:benchmarks", "lmfs.harness.sections:history"]


def _self_contained(html: str) -> None:
    assert "<script" not in html.lower()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html.lower()


def _fill(reports: Path) -> None:
    for i, med in enumerate([0.010, 0.0101, 0.0099, 0.020]):
        entries = [
            bench_entry("b.py::test_ours", rounds(med, seed=i), group="g1", impl="lmfs", tokens=1000),
            bench_entry("b.py::test_peer", rounds(0.005, seed=10 + i), group="g1", impl="tiktoken", tokens=1000),
        ]
        save_run(bench_doc(entries, commit=f"{i}" * 40, when=f"2026-01-0{i + 1}T00:00:00"), reports)
    grade = {
        "adapter": "x.py", "name": "student", "created": "now", "units": {
            "nn": {"earned": 3.0, "possible": 5.0, "tests": 2, "passed": 1, "failed": 1, "skipped": 0, "percent": 60.0}},
        "total": {"earned": 3.0, "possible": 5.0, "tests": 2, "passed": 1, "failed": 1, "skipped": 0, "percent": 60.0},
        "tests": [{"nodeid": "specs/nn/test_a.py::test_crash", "unit": "nn", "points": 2.0, "earned": 0.0,
                   "outcome": "crashed", "duration": 0.1, "message": "killed by SIGSEGV <b>"}],
        "collect_errors": [],
    }
    (reports / "grade").mkdir(parents=True, exist_ok=True)
    (reports / "grade" / "student.json").write_text(json.dumps(grade))


def test_empty_reports_dir_renders(tmp_path: Path) -> None:
    out = build_report(tmp_path, providers=HARNESS)
    html = out.read_text()
    assert out == tmp_path / "index.html"
    assert "Nothing to report yet" in html
    _self_contained(html)


def test_full_store_renders_every_section(tmp_path: Path) -> None:
    _fill(tmp_path)
    html = build_report(tmp_path, providers=HARNESS).read_text()
    _self_contained(html)
    for title in ("Grades", "Benchmarks (latest per machine)", "Benchmark history"):
        assert f"<h2>{title}</h2>" in html
        assert f'href="#{title.lower().split()[0]}' in html  # table of contents
    assert html.count("<svg") >= 1
    assert "killed by SIGSEGV &lt;b&gt;" in html  # messages are escaped
    assert "tiktoken" in html and "regression" in html  # peer ratio and the marked change point
    assert "4 commit(s)" in html


def test_broken_provider_becomes_an_error_box(tmp_path: Path) -> None:
    _fill(tmp_path)
    sections = collect_sections(tmp_path, [*HARNESS, "tests.harness.test_report:_raising_provider"])
    titles = [s.title for s in sections]
    assert "Grades" in titles
    err = [s for s in sections if "failed" in s.title]
    assert len(err) == 1 and "boom from a provider" in err[0].html and 'class="error"' in err[0].html


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("lmfs.no_such_unit.report:section", "no module 'lmfs.no_such_unit.report'"),
        ("lmfs.harness.sections:no_such_function", "has no function 'no_such_function'"),
        ("lmfs.harness.sections", "is not 'module:function'"),
    ],
)
def test_missing_or_misspelled_provider_is_a_loud_error(tmp_path: Path, spec: str, says: str) -> None:
    _fill(tmp_path)
    with pytest.raises(ReportError, match=re.escape(says)):
        collect_sections(tmp_path, [*HARNESS, spec])


def test_every_listed_provider_exists() -> None:
    from lmfs.harness.render import SECTION_PROVIDERS, _find_provider

    for spec in SECTION_PROVIDERS:
        assert callable(_find_provider(spec))


def _raising_provider(reports_dir: Path) -> None:
    raise RuntimeError("boom from a provider")


def test_malformed_files_do_not_break_the_report(tmp_path: Path) -> None:
    _fill(tmp_path)
    (tmp_path / "bench" / "cpu-test-2c" / "zzz.json").write_text("{")
    (tmp_path / "grade" / "bad.json").write_text("[]")
    html = build_report(tmp_path, providers=HARNESS).read_text()
    assert "skipping malformed bench file" in html and "skipping malformed grade file bad.json" in html
    assert "Benchmark history" in html


@pytest.mark.parametrize("provider", HARNESS)
def test_harness_providers_return_none_without_data(tmp_path: Path, provider: str) -> None:
    import importlib

    module, func = provider.split(":")
    assert getattr(importlib.import_module(module), func)(tmp_path) is None
