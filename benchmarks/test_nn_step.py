"""Transformer LM step time on CPU: lmfs (from-scratch layers) vs the same model built from PyTorch built-ins.

Each config × mode is one benchmark group with impl "lmfs" and "torch-builtins"; the peer carries lmfs's
weights (its logits are checked equal first), so both do the same work. Threads pinned (``LMFS_THREADS``,
default 1). ``tokens`` per round in extra_info gives tokens/s.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.nn_peer import PeerLM
from lmfs.nn import TransformerConfig, TransformerLM, cross_entropy

CONFIGS = {  # name: (vocab, context, d_model, layers, heads, d_ff, batch)
    "tiny": (2048, 128, 128, 2, 4, 320, 4),
    "small": (4096, 256, 256, 4, 8, 704, 2),
}


def _models(name: str):
    vocab, ctx, d, layers, heads, d_ff, batch = CONFIGS[name]
    torch.manual_seed(0)
    lmfs = TransformerLM(TransformerConfig(vocab, ctx, d, layers, heads, d_ff))
    peer = PeerLM(vocab, ctx, d, layers, heads, d_ff).load_lmfs(lmfs.state_dict())
    ids = torch.randint(0, vocab, (batch, ctx))
    targets = torch.randint(0, vocab, (batch, ctx))
    with torch.no_grad():
        torch.testing.assert_close(lmfs(ids), peer(ids), rtol=1e-4, atol=1e-4)
    return lmfs, peer, ids, targets


@pytest.mark.parametrize("impl", ["lmfs", "torch-builtins"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_nn_step_cpu(benchmark, torch_threads, config, mode, impl):
    lmfs, peer, ids, targets = _models(config)
    model = lmfs if impl == "lmfs" else peer
    if impl == "lmfs":
        loss_fn = cross_entropy
    else:
        import torch.nn.functional as F

        loss_fn = lambda logits, y: F.cross_entropy(logits.flatten(0, 1), y.flatten())

    def forward() -> None:
        with torch.no_grad():
            model(ids)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(ids), targets).backward()

    benchmark.group = f"nn-step-cpu-{config}-{mode}"
    benchmark.extra_info.update(impl=impl, tokens=ids.numel(), threads=torch_threads)
    benchmark.pedantic(forward if mode == "fwd" else forward_backward, rounds=6, iterations=1, warmup_rounds=1)
