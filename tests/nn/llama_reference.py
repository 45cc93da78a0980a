"""An independent, straightforward Llama forward in Hugging Face layout, for checking lmfs's GGUF loader.

It reads the GGUF tensors itself, undoes llama.cpp's Q/K row permutation to get back HF's half-split rotary
layout, and uses PyTorch built-ins (F.rms_norm, F.silu, F.scaled_dot_product_attention) with rotate_half RoPE.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def read_tensors(path) -> tuple[dict[str, Tensor], dict]:
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(path)
    meta = {k: f.contents() for k, f in reader.fields.items() if len(f.data) <= 64}
    tensors = {}
    for t in reader.tensors:
        arr = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)
        tensors[t.name] = torch.from_numpy(arr.reshape([int(n) for n in t.shape][::-1]))
    return tensors, meta


def unpermute(w: Tensor, n_heads: int) -> Tensor:
    """llama.cpp stores row 2j / 2j+1 of each head = HF row j / j + d/2; go back to HF order."""
    rows, d_in = w.shape
    d_head = rows // n_heads
    return w.reshape(n_heads, d_head // 2, 2, d_in).transpose(1, 2).reshape(rows, d_in)


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


@torch.no_grad()
def llama_forward(tensors: dict[str, Tensor], meta: dict, ids: Tensor) -> Tensor:
    """ids (B, T) -> logits (B, T, vocab), float32."""
    n_layers = int(meta["llama.block_count"])
    n_heads, n_kv = int(meta["llama.attention.head_count"]), int(meta["llama.attention.head_count_kv"])
    d_model = int(meta["llama.embedding_length"])
    eps, theta = float(meta["llama.attention.layer_norm_rms_epsilon"]), float(meta["llama.rope.freq_base"])
    d_head = d_model // n_heads
    B, T = ids.shape
    inv_freq = 1.0 / (theta ** (torch.arange(0, d_head, 2, dtype=torch.float64) / d_head))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().float(), emb.sin().float()

    h = tensors["token_embd.weight"][ids]
    for i in range(n_layers):
        p = f"blk.{i}."
        x = F.rms_norm(h, (d_model,), tensors[p + "attn_norm.weight"], eps=eps)
        q = x @ unpermute(tensors[p + "attn_q.weight"], n_heads).T
        k = x @ unpermute(tensors[p + "attn_k.weight"], n_kv).T
        v = x @ tensors[p + "attn_v.weight"].T
        q = q.view(B, T, n_heads, d_head).transpose(1, 2)
        k = k.view(B, T, n_kv, d_head).transpose(1, 2)
        v = v.view(B, T, n_kv, d_head).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(n_heads // n_kv, dim=1)
        v = v.repeat_interleave(n_heads // n_kv, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + a.transpose(1, 2).reshape(B, T, d_model) @ tensors[p + "attn_output.weight"].T
        x = F.rms_norm(h, (d_model,), tensors[p + "ffn_norm.weight"], eps=eps)
        gate, up = x @ tensors[p + "ffn_gate.weight"].T, x @ tensors[p + "ffn_up.weight"].T
        h = h + (F.silu(gate) * up) @ tensors[p + "ffn_down.weight"].T
    h = F.rms_norm(h, (d_model,), tensors["output_norm.weight"], eps=eps)
    head = tensors.get("output.weight", tensors["token_embd.weight"])
    return h @ head.T
