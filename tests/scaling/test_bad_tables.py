"""`lmfs scaling fit` on tables it cannot fit: one error line naming the rows, never a traceback; identical rows
are warned about and kept or merged as asked."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lmfs.cli import main
from lmfs.scaling.tables import TableError, check_fittable, duplicate_rows, load_named, read_table


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    from lmfs.paths import has_shared_data

    if not has_shared_data("scaling", "isoflops_curves.json"):
        pytest.skip("needs ../shared/data/scaling")
    return load_named("isoflops")[["n_params", "compute", "loss"]].astype(object)


def _bad(df: pd.DataFrame, case: str) -> pd.DataFrame:
    t = df.copy()
    if case == "nan":
        t.loc[3, "loss"] = float("nan")
    elif case == "negative":
        t.loc[5, "n_params"] = -1
    elif case == "zero":
        t.loc[6, "compute"] = 0
    elif case == "two rows":
        t = t.head(2)
    elif case == "string":
        t.loc[2, "loss"] = "oops"
    elif case == "identical rows":
        t = pd.DataFrame([t.iloc[0]] * 10)
    elif case == "five rows, one budget":
        t = t.head(5)
    return t


EXPECT = {
    "nan": "loss is missing or NaN in row 4",
    "negative": "n_params must be > 0 but is zero or negative in row 6",
    "zero": "compute must be > 0 but is zero or negative in row 7",
    "two rows": "2 row(s) (rows 1-2)",
    "string": "loss is not a number in row 3",
    "identical rows": "all 10 rows have the same n_params and compute (rows 1-10)",
}


@pytest.mark.parametrize("case", list(EXPECT))
def test_bad_table_is_one_error_line_naming_the_rows(
    tmp_path: Path, base: pd.DataFrame, case: str, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "t.csv"
    _bad(base, case).to_csv(path, index=False)
    assert main(["scaling", "fit", "--table", str(path), "--boot", "0"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmfs scaling") and ": error: " in lines[0], err
    assert EXPECT[case] in lines[0] and str(path) in lines[0]
    with pytest.raises(TableError):
        check_fittable(read_table(path), str(path))


def test_a_table_that_passes_the_checks_but_cannot_be_fitted_never_crashes(
    tmp_path: Path, base: pd.DataFrame, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "t.csv"
    _bad(base, "five rows, one budget").to_csv(path, index=False)
    rc = main(["scaling", "fit", "--table", str(path), "--boot", "10"])
    out = capsys.readouterr()
    assert rc in (0, 2) and "Traceback" not in out.err
    if rc == 2:
        assert len(out.err.strip().splitlines()) == 1


@pytest.mark.parametrize("mode", ["keep", "merge"])
def test_identical_rows_warn_and_are_kept_or_merged(
    tmp_path: Path, base: pd.DataFrame, mode: str, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "dup.csv"
    pd.concat([base, base.iloc[[4, 4, 9]]]).to_csv(path, index=False)
    assert duplicate_rows(read_table(path)) == [[4, 72, 73], [9, 74]]
    out = tmp_path / "s.json"
    assert main(["scaling", "fit", "--table", str(path), "--boot", "0", "--approach", "3",
                 "--duplicates", mode, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: identical rows 5 = 73 = 74; 10 = 75" in err
    assert json.loads(out.read_text())["rows"] == (75 if mode == "keep" else 72)
    assert ("pass --duplicates merge" in err) == (mode == "keep")
