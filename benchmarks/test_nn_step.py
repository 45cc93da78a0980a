"""Transformer LM step time on CPU: lmfs (from-scratch layers) vs the same model built from PyTorch built-ins.

Each config × mode is one benchmark group with impl "lmfs" and "torch-builtins"; the peer carries lmfs's
weights (its logits are checked equal first), so both do the same work. Threads pinned (``LMFS_THREADS``,
default 1). ``tokens`` per round in extra_info gives tokens/s.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmfs.nn import TransformerConfig, TransformerLM, cross_entropy

# ----------------------------------------------------------------------------------------------- the peer
# the same Transformer LM written with PyTorch built-ins, loadable from an lmfs state dict


class PeerBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, eps: float) -> None:
        super().__init__()
        self.n_heads, self.eps, self.d_model = n_heads, eps, d_model
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.w1 = nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)
        self.w3 = nn.Linear(d_model, d_ff, bias=False)
        self.g1, self.g2 = nn.Parameter(torch.ones(d_model)), nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        B, T, D = x.shape
        h = F.rms_norm(x, (D,), self.g1, self.eps)
        q, k, v = self.qkv(h).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(a.transpose(1, 2).reshape(B, T, D))
        h = F.rms_norm(x, (D,), self.g2, self.eps)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


def _rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class PeerLM(nn.Module):
    def __init__(
        self,
        vocab: int,
        ctx: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        d_ff: int,
        theta: float = 10000.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d_model)
        self.blocks = nn.ModuleList(PeerBlock(d_model, n_heads, d_ff, eps) for _ in range(n_layers))
        self.g_final = nn.Parameter(torch.ones(d_model))
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.eps = eps
        d_head = d_model // n_heads
        inv = theta ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
        ang = torch.arange(ctx, dtype=torch.float64)[:, None] * inv
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)

    def forward(self, ids: Tensor) -> Tensor:
        T = ids.shape[-1]
        x = self.emb(ids)
        for blk in self.blocks:
            x = blk(x, self.cos[:T], self.sin[:T])
        return self.head(F.rms_norm(x, (x.shape[-1],), self.g_final, self.eps))

    @torch.no_grad()
    def load_lmfs(self, sd: dict[str, Tensor]) -> PeerLM:
        """Copy an lmfs TransformerLM state dict (fused QKV names) into this model."""
        self.emb.weight.copy_(sd["token_embeddings.weight"])
        self.head.weight.copy_(sd["lm_head.weight"])
        self.g_final.copy_(sd["ln_final.weight"])
        for i, blk in enumerate(self.blocks):
            p = f"layers.{i}."
            blk.qkv.weight.copy_(sd[p + "attn.qkv_proj.weight"])
            blk.out.weight.copy_(sd[p + "attn.output_proj.weight"])
            for name in ("w1", "w2", "w3"):
                getattr(blk, name).weight.copy_(sd[p + f"ffn.{name}.weight"])
            blk.g1.copy_(sd[p + "ln1.weight"])
            blk.g2.copy_(sd[p + "ln2.weight"])
        return self


# ----------------------------------------------------------------------------------------------- benchmarks

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
        loss_fn = lambda logits, y: F.cross_entropy(logits.flatten(0, 1), y.flatten())

    def forward() -> None:
        with torch.no_grad():
            model(ids)

    def forward_backward() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(ids), targets).backward()

    benchmark.group = f"nn-step-cpu-{config}-{mode}"
    benchmark.extra_info.update(impl=impl, tokens=ids.numel(), threads=torch_threads)
    benchmark.pedantic(
        forward if mode == "fwd" else forward_backward, rounds=6, iterations=1, warmup_rounds=1
    )
