"""The report section: None without data, figures and tables with it."""

from __future__ import annotations

import shutil
from pathlib import Path

from lmfs.scaling.report import section

DATA = Path(__file__).resolve().parents[2] / "reports" / "data" / "scaling"


def test_none_without_data(tmp_path):
    assert section(tmp_path) is None


def test_sections_from_stored_data(tmp_path):
    if not (DATA / "fit_epoch.json").exists():
        import pytest

        pytest.skip("reports/data/scaling not generated yet")
    shutil.copytree(DATA, tmp_path / "data" / "scaling")
    out = section(tmp_path)
    assert out is not None
    html = "\n".join(s.html for s in out)
    assert "<svg" in html and "Epoch refit" in html and "1e+23" in html


def test_broken_json_is_skipped(tmp_path):
    d = tmp_path / "data" / "scaling"
    d.mkdir(parents=True)
    (d / "fit_epoch.json").write_text("{not json")
    assert section(tmp_path) is None
