"""TrainConfig: the nested model, files with tables, typed overrides, the older flat layout of configs and
checkpoints, clear errors for bad keys and values."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from lmfs.nn import TransformerConfig, TransformerLM
from lmfs.train.checkpoint import load_model, save_checkpoint
from lmfs.train.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    nested_config,
    save_config,
)

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
    assert (cfg.model.vocab_size, cfg.model.d_model, cfg.lr, cfg.max_steps) == (500, 64, 3e-3, 50)
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
    assert cfg.model.num_kv_heads == 2 and cfg.model.norm == "post" and cfg.min_lr == 0.0
    assert apply_overrides(cfg, ["num_kv_heads=none"]).model.num_kv_heads is None
    assert apply_overrides(cfg, ["model.num_kv_heads=none"]).model.num_kv_heads is None


def test_json_config(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"d_model": 96, "num_heads": 3, "train_data": "x.npy", "lr": 0.01, "min_lr": 0.001})
    )
    cfg = load_config(path)
    assert cfg.model.d_model == 96 and cfg.model.num_heads == 3


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


# ------------------------------------------------------------------------------------------ the nested model


def test_defaults_and_to_dict_are_nested() -> None:
    cfg = TrainConfig()
    assert isinstance(cfg.model, TransformerConfig)
    d = cfg.to_dict()
    assert d["model"] == cfg.model.to_dict() and "d_model" not in d
    assert d["eps"] == 1e-8 and d["model"]["eps"] == 1e-5  # AdamW's and RMSNorm's
    assert cfg.tokens_per_step == cfg.batch_size * cfg.model.context_length


def test_round_trip_through_dict_json_file_and_overrides(tmp_path: Path) -> None:
    cfg = load_config(
        _write(tmp_path),
        ["model.num_kv_heads=2", "model.tie_embeddings=true", "model.eps=1e-6", "optim.eps=1e-7", "lr=2e-3"],
    )
    assert config_from_dict(cfg.to_dict()) == cfg
    save_config(cfg, tmp_path / "saved.json")
    assert load_config(tmp_path / "saved.json") == cfg
    assert (cfg.model.eps, cfg.eps, cfg.model.tie_embeddings) == (1e-6, 1e-7, True)
    again = apply_overrides(cfg, ["model.d_model=128", "d_ff=256"])
    assert (again.model.d_model, again.model.d_ff, again.model.num_kv_heads) == (128, 256, 2)
    assert cfg.model.d_model == 64  # a copy


def test_model_table_fills_from_the_default_model(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text('train_data = "x.npy"\n[model]\nd_model = 128\nnum_heads = 4\nnorm = "post"\n')
    cfg = load_config(path)
    assert (cfg.model.d_model, cfg.model.norm) == (128, "post")
    assert (
        cfg.model.d_ff == TrainConfig().model.d_ff and cfg.model.vocab_size == TrainConfig().model.vocab_size
    )


def test_old_flat_config_loads_with_eps_as_adamw(tmp_path: Path) -> None:
    """Before the model was nested, config.json was one flat dict (and eps was AdamW's)."""
    flat = _old_flat_payload_config(TrainConfig().model)
    flat.update(d_model=96, num_heads=3, vocab_size=300, norm="post", eps=1e-7)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(flat))
    cfg = load_config(path)
    assert (cfg.model.d_model, cfg.model.num_heads, cfg.model.vocab_size, cfg.model.norm) == (
        96,
        3,
        300,
        "post",
    )
    assert cfg.eps == 1e-7 and cfg.model.eps == 1e-5
    nested = nested_config(flat)
    assert nested["model"] == {k: v for k, v in cfg.model.to_dict().items() if k != "eps"}
    assert nested["eps"] == 1e-7 and "d_model" not in nested


def test_a_key_set_flat_and_in_the_model_table_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "d_model = 32\n" + TOML, name="twice.toml")
    with pytest.raises(ConfigError, match=r"'model\.d_model' is set twice"):
        load_config(path)


def test_ambiguous_bare_override_says_what_to_write(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'eps' in --set is ambiguous.*model\.eps=.*RMSNorm.*optim\.eps=.*AdamW"
    ):
        load_config(_write(tmp_path), ["eps=1e-6"])
    assert load_config(_write(tmp_path), ["model.eps=1e-6"]).model.eps == 1e-6
    assert load_config(_write(tmp_path), ["optim.eps=1e-6"]).eps == 1e-6


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.lr=1", r"unknown config key 'model.lr'"),
        ("model.d_modle=1", "did you mean d_model"),
        ("model.norm=layer", r"norm must be one of"),
        ("model.d_model=many", r"model.d_model in --set must be an integer"),
        ("a.b.c=1", "nest one level"),
    ],
)
def test_bad_model_overrides(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path), [override])


def test_an_override_can_fix_the_files_model(tmp_path: Path) -> None:
    path = _write(tmp_path, TOML.replace("num_heads = 4", "num_heads = 3"), name="fixme.toml")
    with pytest.raises(ConfigError, match=r"model: d_model \(64\) must be divisible by num_heads \(3\)"):
        load_config(path)
    assert load_config(path, ["model.num_heads=8"]).model.num_heads == 8


def test_validate_takes_the_models_messages_from_transformer_config(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path))
    cfg.model.num_kv_heads = 3  # mutated after construction: validate() still sees it
    with pytest.raises(ConfigError, match=r"model: num_kv_heads \(3\)"):
        cfg.validate()


# ------------------------------------------------------------------------------------------ old checkpoints


def _old_flat_payload_config(model: TransformerConfig) -> dict:
    """The ``config`` a checkpoint written before the model was nested holds: the flat TrainConfig dict."""
    flat = {k: v for k, v in TrainConfig(train_data="x.npy").to_dict().items() if k != "model"}
    flat.update(
        {k: v for k, v in model.to_dict().items() if k != "eps"}
    )  # the old TrainConfig had no model eps
    return flat


def test_old_checkpoint_payload_rebuilds_the_same_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model_cfg = TransformerConfig(
        vocab_size=40, context_length=12, d_model=16, num_layers=2, num_heads=4, d_ff=32, num_kv_heads=2
    )
    model = TransformerLM(model_cfg)
    flat = _old_flat_payload_config(model_cfg)
    save_checkpoint(model, None, 7, tmp_path / "old.pt", config=flat)
    loaded, cfg = load_model(tmp_path / "old.pt")
    assert loaded.config == model_cfg  # eps 1e-8 at the top level stayed AdamW's, not RMSNorm's
    assert cfg["model"] == {k: v for k, v in model_cfg.to_dict().items() if k != "eps"} and cfg["eps"] == 1e-8
    x = torch.randint(0, 40, (2, 12))
    model.eval()
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    # and a new, nested payload
    new = TrainConfig(model=model_cfg, train_data="x.npy").to_dict()
    save_checkpoint(model, None, 8, tmp_path / "new.pt", config=new)
    loaded, cfg = load_model(tmp_path / "new.pt")
    assert loaded.config == model_cfg and cfg == new


def test_resume_accepts_an_old_flat_checkpoint_config(tmp_path: Path) -> None:
    from lmfs.train.loop import _check_same_model

    cfg = TrainConfig(train_data="x.npy")
    _check_same_model(_old_flat_payload_config(cfg.model), cfg, tmp_path / "c.pt")  # the same model
    other = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, d_ff=64))
    with pytest.raises(ConfigError, match="d_ff: checkpoint 704 vs config 64"):
        _check_same_model(_old_flat_payload_config(cfg.model), other, tmp_path / "c.pt")
