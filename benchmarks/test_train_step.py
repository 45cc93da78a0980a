"""One optimizer step of a small Transformer LM on the CPU: lmfs's AdamW vs torch.optim.AdamW as the peer.

Group ``train-step-small``: forward + backward + AdamW step (the whole step; the model is lmfs's in both).
Group ``adamw-step-small``: the optimizer step alone on the same parameters and gradients (bytes: read
param, grad, m, v and write param, m, v, fp32).
"""

from __future__ import annotations

import pytest
import torch

from lmfs.nn import TransformerConfig, TransformerLM, cross_entropy
from lmfs.optim import AdamW

CONFIG = dict(vocab_size=2048, context_length=128, d_model=128, num_layers=2, num_heads=4, d_ff=384)
BATCH = 8
PEERS = {"lmfs": AdamW, "torch-adamw": torch.optim.AdamW}


def _setup(impl: str) -> tuple[TransformerLM, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**CONFIG))
    opt = PEERS[impl](model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    x = torch.randint(0, CONFIG["vocab_size"], (BATCH, CONFIG["context_length"]))
    y = torch.randint(0, CONFIG["vocab_size"], (BATCH, CONFIG["context_length"]))
    return model, opt, x, y


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("impl", list(PEERS))
def test_train_step(benchmark, torch_threads: int, impl: str) -> None:
    model, opt, x, y = _setup(impl)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = cross_entropy(model(x).reshape(-1, CONFIG["vocab_size"]), y.reshape(-1))
        loss.backward()
        opt.step()
        return float(loss)

    benchmark.group = "train-step-small"
    tokens = BATCH * CONFIG["context_length"]
    benchmark.extra_info.update(
        impl=impl, tokens=tokens, flops=6 * _n_params(model) * tokens, threads=torch_threads
    )
    first = step()
    losses = benchmark.pedantic(lambda: step(), rounds=20, iterations=1, warmup_rounds=2)
    assert losses < first  # the steps train the model


@pytest.mark.parametrize("impl", list(PEERS))
def test_adamw_step(benchmark, torch_threads: int, impl: str) -> None:
    model, opt, x, y = _setup(impl)
    loss = cross_entropy(model(x).reshape(-1, CONFIG["vocab_size"]), y.reshape(-1))
    loss.backward()
    before = model.lm_head.weight.detach().clone()
    benchmark.group = "adamw-step-small"
    benchmark.extra_info.update(
        impl=impl, params=_n_params(model), bytes=7 * 4 * _n_params(model), threads=torch_threads
    )
    benchmark.pedantic(opt.step, rounds=20, iterations=1, warmup_rounds=2)
    assert not torch.equal(before, model.lm_head.weight)
