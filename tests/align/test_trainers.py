"""The alignment trainers end to end on a tiny model (seconds): SFT's loss falls, GRPO's reward rises, a killed
GRPO run resumes bit-exactly (mid rollout batch, from the saved buffer), bad input is counted, not hidden."""

from __future__ import annotations

import json

import pytest
import torch

from lmfs.align.config import config_from_dict, load_config
from lmfs.align.trainer import train_grpo, train_sft
from lmfs.train.metrics import read_metrics

BASE = {
    "run": {"seed": 0, "threads": 1, "tensorboard": False, "eval_every": 1000, "ckpt_every": 1000},
    "model": {"d_model": 32, "num_layers": 1, "num_heads": 2, "d_ff": 64, "context_length": 8},
    "task": {"digits": 1, "heldout_size": 20},
}


def _cfg(kind: str, out, **tables) -> dict:
    data = {k: dict(v) for k, v in BASE.items()}
    data["run"].update(kind=kind, out_dir=str(out))
    for table, values in tables.items():
        data.setdefault(table, {}).update(values)
    return config_from_dict(data)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("align") / "sft"
    summary = train_sft(_cfg("sft", out, optim={"lr": 1e-2, "warmup": 5, "min_lr": 1e-3},
                             sft={"steps": 40, "batch_size": 32}), progress=False)
    return out, summary


def test_sft_loss_falls(sft_run):
    out, summary = sft_run
    assert summary["loss_last10"] < 0.6 * summary["loss_first10"]
    assert (out / "checkpoints").is_dir() and (out / "summary.json").is_file()
    kinds = {r["kind"] for r in read_metrics(out / "metrics.jsonl")}
    assert {"train", "eval"} <= kinds


def test_grpo_reward_rises(sft_run, tmp_path):
    out, _ = sft_run
    cfg = _cfg("grpo", tmp_path / "grpo", run={"init": str(out)}, optim={"lr": 5e-3, "warmup": 0, "min_lr": 5e-3},
               grpo={"steps": 30, "prompts_per_step": 16, "group_size": 8, "loss_type": "reinforce_with_baseline"})
    summary = train_grpo(cfg, progress=False)
    rewards = [r["reward_mean"] for r in read_metrics(tmp_path / "grpo" / "metrics.jsonl") if r["kind"] == "rollout"]
    assert len(rewards) == 30
    first, last = sum(rewards[:8]) / 8, sum(rewards[-8:]) / 8
    assert last > first + 0.05, rewards
    assert summary["reward_errors"] == 0 and summary["dropped_groups"] == 0
    train = [r for r in read_metrics(tmp_path / "grpo" / "metrics.jsonl") if r["kind"] == "train"]
    assert all(k in train[-1] for k in ("entropy", "kl_ref", "kl_old", "clip_fraction", "grad_norm"))
    assert train[-1]["kl_ref"] > 0  # the policy moved away from the reference


def _grpo_resume_cfg(init, out):
    return _cfg("grpo", out, run={"init": str(init), "ckpt_every": 1},
                optim={"lr": 5e-3, "warmup": 0, "min_lr": 5e-3},
                grpo={"steps": 3, "prompts_per_step": 4, "group_size": 4, "loss_type": "grpo_clip", "epochs": 2,
                      "minibatch_size": 8})


def test_grpo_resume_is_bit_exact(sft_run, tmp_path):
    """2 epochs x 2 minibatches per rollout batch: stopping after update 6 leaves the run inside a batch, so
    the resumed run must train on the saved buffer with the saved optimizer and RNG states."""
    init, _ = sft_run
    straight = train_grpo(_grpo_resume_cfg(init, tmp_path / "a"), progress=False)
    assert straight["iterations"] == 12
    assert train_grpo(_grpo_resume_cfg(init, tmp_path / "b"), progress=False, stop_at=6) == {"stopped_at": 6}
    resumed = train_grpo(_grpo_resume_cfg(init, tmp_path / "b"), progress=False)
    assert resumed["resumed_from"] and resumed["resumed_from"].endswith("ckpt_00000006.pt")
    a = torch.load(sorted((tmp_path / "a" / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    b = torch.load(sorted((tmp_path / "b" / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    ma = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if r["kind"] == "train"]
    mb = [r for r in read_metrics(tmp_path / "b" / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["loss"] for r in ma] == [r["loss"] for r in mb]


def test_grpo_resume_detects_a_broken_restore(sft_run, tmp_path):
    """The bit-exact check above can fail: resuming without the saved buffer (a fresh rollout) differs."""
    init, _ = sft_run
    train_grpo(_grpo_resume_cfg(init, tmp_path / "a"), progress=False)
    train_grpo(_grpo_resume_cfg(init, tmp_path / "b"), progress=False, stop_at=6)
    ckpt = sorted((tmp_path / "b" / "checkpoints").glob("*.pt"))[-1]
    payload = torch.load(ckpt, weights_only=True)
    payload["extra"]["state"]["buffer"] = None  # a trainer that forgot the rollout buffer
    torch.save(payload, ckpt)
    train_grpo(_grpo_resume_cfg(init, tmp_path / "b"), progress=False)
    a = torch.load(sorted((tmp_path / "a" / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    b = torch.load(sorted((tmp_path / "b" / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    assert any(not torch.equal(v, b["model"][k]) for k, v in a["model"].items())


def test_raising_reward_is_counted_not_zero(sft_run, tmp_path, monkeypatch):
    import lmfs.align.rewards as rewards

    init, _ = sft_run
    calls = {"n": 0}

    def flaky(response, truth):
        calls["n"] += 1
        if calls["n"] % 5 == 0:
            raise RuntimeError("verifier crashed")
        return rewards.addition_reward(response, truth)

    monkeypatch.setitem(rewards.REWARDS, "addition", flaky)
    cfg = _cfg("grpo", tmp_path / "g", run={"init": str(init)},
               grpo={"steps": 2, "prompts_per_step": 4, "group_size": 4, "loss_type": "reinforce_with_baseline"})
    summary = train_grpo(cfg, progress=False)
    assert summary["reward_errors"] == 32 // 5
    assert summary["dropped_groups"] >= 1
    assert "verifier crashed" in summary["first_reward_error"]


def test_every_reward_failing_is_an_error(sft_run, tmp_path, monkeypatch):
    import lmfs.align.rewards as rewards

    init, _ = sft_run

    def broken(response, truth):
        raise KeyError("no verifier")

    monkeypatch.setitem(rewards.REWARDS, "addition", broken)
    cfg = _cfg("grpo", tmp_path / "g", run={"init": str(init)},
               grpo={"steps": 2, "prompts_per_step": 2, "group_size": 2, "loss_type": "reinforce_with_baseline"})
    with pytest.raises(RuntimeError, match=r"every reward call failed.*no verifier"):
        train_grpo(cfg, progress=False)


def test_sft_data_bad_rows_are_counted(tmp_path):
    data = tmp_path / "data.jsonl"
    good = [{"prompt": f"{a}+{a}=", "response": str(2 * a)} for a in range(10)]
    lines = [json.dumps(r) for r in good] + [
        "{not json", json.dumps({"prompt": "1+1="}), json.dumps({"prompt": "1+1=", "response": ""}),
        json.dumps({"prompt": "1+1=", "response": "2" * 20}),  # longer than the context of 8
        json.dumps({"prompt": "one+one=", "response": "two"}),  # letters the tokenizer does not know
    ]
    data.write_text("\n".join(lines) + "\n")
    summary = train_sft(_cfg("sft", tmp_path / "s", sft={"steps": 3, "batch_size": 4, "data": str(data)}),
                        progress=False)
    assert summary["skipped"] == {"malformed": 2, "empty_response": 1, "too_long": 1, "unencodable": 1}
    assert any("data.jsonl:11" in n for n in summary["skip_notes"])


def test_sft_data_with_nothing_usable_is_an_error(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text("{oops\n[1, 2]\n")
    with pytest.raises(ValueError, match="no usable examples"):
        train_sft(_cfg("sft", tmp_path / "s", sft={"steps": 3, "data": str(data)}), progress=False)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key grpo\.group"):
        config_from_dict({"grpo": {"group": 4}})
    with pytest.raises(ValueError, match=r"grpo\.loss_type"):
        config_from_dict({"grpo": {"loss_type": "ppo"}})
    with pytest.raises(ValueError, match=r"sft\.steps must be int"):
        config_from_dict({"sft": {"steps": "many"}})
    bad = tmp_path / "c.toml"
    bad.write_text("[run\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)


def test_committed_configs_load():
    from pathlib import Path

    import lmfs.align

    folder = Path(lmfs.align.__file__).parent / "configs"
    configs = sorted(folder.glob("*.toml"))
    assert configs
    for path in configs:
        load_config(path)
