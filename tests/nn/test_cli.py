"""The model flags of ``lmfs model info`` and ``lmfs scaling flops`` come from TransformerConfig's fields."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from lmfs.cli import build_parser, main
from lmfs.nn import TransformerConfig


def _subparser(*words: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in words:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    parser.format_help()  # the model flags are added on first use
    return parser


def _dests(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    return {a.dest: a.option_strings for a in parser._actions}


@pytest.mark.parametrize("command", [("model", "info"), ("scaling", "flops")])
def test_every_config_field_has_a_flag(command: tuple[str, ...]) -> None:
    dests = _dests(_subparser(*command))
    for f in dataclasses.fields(TransformerConfig):
        assert "--" + f.name.replace("_", "-") in dests.get(f.name, []), f"no flag for {f.name} in {command}"
    assert "--preset" in dests["preset"]


def test_model_info_from_a_preset_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "info", "--preset", "cs336-tinystories"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 22,696,448 total" in out
    assert main(["model", "info", "--preset", "small", "--context-length", "128", "--norm", "post"]) == 0
    out = capsys.readouterr().out
    assert "d_model=768" in out and "context_length=128" in out and "norm='post'" in out
    flags = ["--vocab-size", "50", "--context-length", "8", "--d-model", "16", "--num-layers", "1"]
    flags += ["--num-heads", "2", "--d-ff", "32", "--tie-embeddings", "--num-kv-heads", "1", "--eps", "1e-6"]
    assert main(["model", "info", *flags]) == 0
    out = capsys.readouterr().out
    assert "tie_embeddings=True" in out and "num_kv_heads=1" in out and "eps=1e-06" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["model", "info", "--d-model", "64"],
            "--vocab-size --context-length --num-layers --num-heads --d-ff",
        ),
        (["model", "info", "--preset", "small"], "preset 'small' fixes no --context-length"),
        (["model", "info", "--preset", "gpt-5"], "known presets"),
        (["model", "info", "--preset", "tiny", "--context-length", "8", "--num-heads", "3"], "divisible"),
        (["scaling", "flops", "--d-model", "100"], "divisible by num_heads"),
    ],
)
def test_bad_shapes_are_clear_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_scaling_flops_defaults_to_the_tinystories_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scaling", "flops"]) == 0
    assert "parameters: total 22,696,448" in capsys.readouterr().out
    assert main(["scaling", "flops", "--preset", "tiny", "--context-length", "32", "--batch-size", "2"]) == 0
    assert "one batch (2×32)" in capsys.readouterr().out
