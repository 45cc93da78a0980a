"""The ``lmfs`` command reports a user's mistake in one format, ``lmfs <command>: error: <message>``, with exit
status 2 (argparse's own convention), and never as a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lmfs.cli import CLIError, main


@pytest.mark.parametrize(
    ("argv", "prefix", "says"),
    [
        (["train", "--set", "lr=-1"], "lmfs train: error: ", "lr must be > 0"),
        (["tokenizer", "decode", "{missing}"], "lmfs tokenizer decode: error: ", "pass --tokenizer"),
        (["compare", "aaaa", "bbbb", "--reports-dir", "{tmp}"], "lmfs compare: error: ", "bench store is empty"),
        (["generate", "--checkpoint", "{missing}"], "lmfs generate: error: ", "no checkpoint"),
        (["model", "info"], "lmfs model info: error: ", "give --preset"),
    ],
)
def test_user_errors_share_one_prefix(
    argv: list[str], prefix: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.format(tmp=tmp_path, missing=tmp_path / "missing") for a in argv]
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err and err[0].startswith(prefix) and says in "\n".join(err), err
    assert "Traceback" not in "\n".join(err)


def test_cli_error_carries_its_exit_code(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def fail(_args: object) -> int:
        raise CLIError("something the user can fix", code=3)

    monkeypatch.setattr("lmfs.cli.harness.cmd_report", fail)  # registered when main() builds the parser
    assert main(["report"]) == 3
    assert capsys.readouterr().err.strip() == "lmfs report: error: something the user can fix"


def test_help_starts_without_torch() -> None:
    """``lmfs --help`` builds every unit's parser without importing torch (start-up speed)."""
    code = "import sys; from lmfs.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_python_dash_m_lmfs_runs_the_command() -> None:
    res = subprocess.run([sys.executable, "-m", "lmfs", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "tokenizer" in res.stdout and "grade" in res.stdout


def test_attention_choices_come_from_the_backend_registry() -> None:
    from lmfs.cli import build_parser
    from lmfs.kernels.attention_backends import attention_names

    def subparser(parser, name):
        action = next(a for a in parser._actions if isinstance(getattr(a, "choices", None), dict))
        return action.choices[name]

    root = build_parser()
    for path in (["profile"], ["bench", "model"]):
        parser = root
        for name in path:
            parser = subparser(parser, name)
        option = next(a for a in parser._actions if "--attention" in a.option_strings)
        assert tuple(option.choices) == tuple(attention_names())


def test_harness_commands_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``pip install lmfs`` has no harness packages: the harness commands say so instead of a traceback."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert main(["report", "--reports-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "lmfs report: error: this command needs matplotlib: pip install 'lmfs[harness]'"
    )
    assert not (tmp_path / "index.html").exists()
