"""The ``lmfs scaling`` commands, run in-process."""

from __future__ import annotations

import json

import pytest

from lmfs.cli import main
from lmfs.paths import has_shared_data


def test_predict_from_params(capsys):
    assert (
        main(["scaling", "predict", "--params", "1.69", "406.4", "410.7", "0.34", "0.28", "--budget", "1e23"])
        == 0
    )
    out = capsys.readouterr().out
    assert "a=0.4516" in out  # β/(α+β) = 0.28/0.62


def test_flops(capsys):
    assert (
        main(
            [
                "scaling",
                "flops",
                "--d-model",
                "64",
                "--num-heads",
                "4",
                "--d-ff",
                "176",
                "--num-layers",
                "2",
                "--context-length",
                "32",
                "--vocab-size",
                "100",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "non-embedding" in out and "lm_head" in out and "Kaplan" in out


def test_simulate_query_with_state(tmp_path, capsys):
    state = tmp_path / "sim.json"
    args = ["scaling", "simulate", "--state", str(state), "--budget", "1e16", "--query"]
    assert main([*args, "256", "4", "4", "128", "3e-4", "1e16"]) == 0
    assert main([*args, "128", "4", "4", "128", "3e-4", "1e15"]) == 1  # over budget
    assert "exceed" in capsys.readouterr().err
    assert len(json.loads(state.read_text())["history"]) == 1
    assert main([*args, "2048", "4", "4", "128", "3e-4", "1e15"]) == 2  # d_model out of the API range


def test_sweep_dry_run(tmp_path, capsys):
    assert (
        main(
            [
                "scaling",
                "sweep",
                "--dry-run",
                "--budgets",
                "3e11",
                "--sizes",
                "4e4",
                "1e5",
                "--table",
                str(tmp_path / "t.csv"),
            ]
        )
        == 0
    )
    assert "2 runs" in capsys.readouterr().out


@pytest.mark.skipif(not has_shared_data("scaling"), reason="needs ../shared/data/scaling")
def test_fit_isoflops_writes_json(tmp_path, capsys):
    out = tmp_path / "fit.json"
    assert main(["scaling", "fit", "--table", "isoflops", "--boot", "5", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    assert set(summary["approaches"]) == {"1", "2", "3"}
    assert summary["approaches"]["3"]["params"]["E"] == pytest.approx(2.69, rel=1e-3)
