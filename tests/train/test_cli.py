"""`lmfs train`: config file + overrides, clear errors, resume on a second call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfs.cli import main
from tests.train.helpers import tiny_config


def _config_file(tmp_path: Path) -> Path:
    cfg = tiny_config(tmp_path, max_steps=4, out_dir=str(tmp_path / "run"))
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return path


def test_train_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _config_file(tmp_path)
    assert main(["train", "--config", str(path), "--no-progress", "--set", "lr=5e-3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 4
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lr"] == 5e-3
    # a second call with more steps continues from step 4
    assert (
        main(["train", "--config", str(path), "--no-progress", "--max-steps", "6", "--set", "lr=5e-3"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["steps"] == 6


def test_print_config_and_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _config_file(tmp_path)
    assert main(["train", "--config", str(path), "--print-config", "--set", "d_model=64"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"]["d_model"] == 64 and "d_model" not in printed  # nested
    assert (
        main(
            [
                "train",
                "--config",
                str(path),
                "--print-config",
                "--set",
                "model.eps=1e-6",
                "--set",
                "optim.eps=1e-7",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert (printed["model"]["eps"], printed["eps"]) == (1e-6, 1e-7)
    assert main(["train", "--config", str(path), "--print-config", "--set", "eps=1e-6"]) == 2
    assert "'eps' in --set is ambiguous" in capsys.readouterr().err
    assert main(["train", "--config", str(path), "--set", "lr=-3"]) == 2
    assert "lr must be > 0" in capsys.readouterr().err
    assert main(["train", "--config", str(path), "--train-data", str(tmp_path / "missing.npy")]) == 2
    assert "token file not found" in capsys.readouterr().err
