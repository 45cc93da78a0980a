"""TrainConfig: files with tables, typed overrides, clear errors for bad keys and values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfs.train.config import ConfigError, TrainConfig, apply_overrides, load_config

TOML = """
[model]
vocab_size = 500
d_model = 64
num_heads = 4
num_layers = 2
d_ff = 128
context_length = 32

[data]
train_data = "tokens/train.npy"

[optim]
lr = 3e-3
warmup_iters = 10

[run]
max_steps = 50
out_dir = "out"
"""


def _write(tmp_path: Path, text: str = TOML, name: str = "cfg.toml") -> Path:
    (tmp_path / "tokens").mkdir(exist_ok=True)
    (tmp_path / "tokens" / "train.npy").write_bytes(b"")
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_tables_flatten_and_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path))
    assert (cfg.vocab_size, cfg.d_model, cfg.lr, cfg.max_steps) == (500, 64, 3e-3, 50)
    assert Path(cfg.train_data) == (tmp_path / "tokens" / "train.npy").resolve()
    assert cfg.out_dir == "out"  # out_dir is where the user runs, not resolved
    assert cfg.batch_size == TrainConfig().batch_size  # defaults fill the rest


def test_overrides_are_parsed_by_field_type(tmp_path: Path) -> None:
    cfg = load_config(
        _write(tmp_path),
        [
            "lr=1e-4",
            "max_steps=2e3",
            "compile=true",
            "tensorboard=no",
            "num_kv_heads=2",
            "norm=post",
            "min_lr=0",
        ],
    )
    assert cfg.lr == 1e-4 and isinstance(cfg.lr, float)
    assert cfg.max_steps == 2000 and isinstance(cfg.max_steps, int)
    assert cfg.compile is True and cfg.tensorboard is False
    assert cfg.num_kv_heads == 2 and cfg.norm == "post" and cfg.min_lr == 0.0
    assert apply_overrides(cfg, ["num_kv_heads=none"]).num_kv_heads is None


def test_json_config(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"d_model": 96, "num_heads": 3, "train_data": "x.npy", "lr": 0.01, "min_lr": 0.001})
    )
    cfg = load_config(path)
    assert cfg.d_model == 96 and cfg.num_heads == 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("d_modle=128", "did you mean d_model"),
        ("lr", "not key=value"),
        ("max_steps=ten", "max_steps in --set must be an integer"),
        ("batch_size=2.5", "batch_size in --set must be an integer"),
        ("compile=maybe", "compile in --set must be true or false"),
    ],
)
def test_bad_overrides_say_what_is_wrong(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path), [override])


def test_unknown_key_in_file_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, TOML + "\nbatchsize = 4\n", name="typo.toml")
    with pytest.raises(ConfigError, match=r"unknown config key 'batchsize' in .*typo.toml.*batch_size"):
        load_config(path)


def test_wrong_type_in_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"d_model in .* must be an integer"):
        load_config(_write(tmp_path, TOML.replace("d_model = 64", 'd_model = "64x"')))


def test_every_bad_value_is_listed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            _write(tmp_path),
            [
                "lr=-1",
                "d_model=100",
                "num_heads=3",
                "warmup_iters=80",
                "grad_clip=-2",
                "device=tpu",
                "beta2=1.0",
            ],
        )
    text = str(info.value)
    for needle in (
        "lr must be > 0",
        "d_model (100) must be divisible by num_heads (3)",
        "warmup_iters (80)",
        "grad_clip must be >= 0",
        "device must be",
        "beta1, beta2",
    ):
        assert needle in text, f"{needle!r} missing from:\n{text}"


def test_missing_config_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot parse config file"):
        load_config(_write(tmp_path, "lr = = 3", name="bad.toml"))


def test_shipped_configs_load() -> None:
    folder = Path(__file__).resolve().parents[2] / "lmfs" / "train" / "configs"
    files = sorted(folder.glob("*.toml"))
    assert files, f"no configs in {folder}"
    for path in files:
        cfg = load_config(path)
        assert cfg.max_steps > 0 and cfg.train_data
