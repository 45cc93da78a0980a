"""The peer for lmfs.nn benchmarks: the same Transformer LM written with PyTorch built-ins
(nn.Linear, nn.Embedding, F.rms_norm, F.silu, F.scaled_dot_product_attention), loadable from an lmfs state dict."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
    def __init__(self, vocab: int, ctx: int, d_model: int, n_layers: int, n_heads: int, d_ff: int,
                 theta: float = 10000.0, eps: float = 1e-5) -> None:
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
