"""Conversion between CS336-style state dicts (separate q/k/v projections) and lmfs's fused QKV layout."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

_Q, _K, _V, _QKV = "attn.q_proj.weight", "attn.k_proj.weight", "attn.v_proj.weight", "attn.qkv_proj.weight"


def fuse_qkv(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Replace every ``<prefix>attn.{q,k,v}_proj.weight`` triple by ``<prefix>attn.qkv_proj.weight`` = cat(q, k, v).

    Works for a block's dict (prefix "") and an LM's (prefix "layers.{i}."). Other keys pass through.
    """
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith(_Q):
            prefix = key[: -len(_Q)]
            try:
                parts = [state_dict[prefix + name] for name in (_Q, _K, _V)]
            except KeyError as exc:
                raise KeyError(
                    f"state dict has {key!r} but not {exc.args[0]!r}; q, k and v projections go together"
                ) from None
            out[prefix + _QKV] = torch.cat(parts, dim=0)
        elif key.endswith((_K, _V)):
            continue
        else:
            out[key] = value
    return out


def split_qkv(
    state_dict: Mapping[str, Tensor], num_heads: int, num_kv_heads: int | None = None
) -> dict[str, Tensor]:
    """The inverse of :func:`fuse_qkv`: export a model's state dict with CS336's separate q/k/v keys."""
    num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith(_QKV):
            prefix = key[: -len(_QKV)]
            d_head = value.shape[0] // (num_heads + 2 * num_kv_heads)
            q, k, v = value.split((num_heads * d_head, num_kv_heads * d_head, num_kv_heads * d_head), dim=0)
            out[prefix + _Q], out[prefix + _K], out[prefix + _V] = q, k, v
        else:
            out[key] = value
    return out


@torch.no_grad()
def load_cs336_state_dict(module: nn.Module, state_dict: Mapping[str, Tensor], strict: bool = True) -> None:
    """Load a CS336-style state dict (``token_embeddings.weight``, ``layers.{i}.attn.q_proj.weight``, …,
    ``ln_final.weight``, ``lm_head.weight``; or a block's ``attn.q_proj.weight``, ``ln1.weight``, …) into
    an lmfs TransformerLM / TransformerBlock, fusing Q/K/V. Tensors are copied in the module's dtype/device.
    """
    fused = fuse_qkv(state_dict)
    missing, unexpected = module.load_state_dict(fused, strict=False)
    if strict and (missing or unexpected):
        raise KeyError(
            f"load_cs336_state_dict: missing keys {sorted(missing)}, unexpected keys {sorted(unexpected)} "
            f"(expected CS336 names such as 'layers.0.attn.q_proj.weight'; check num_layers and the key names)"
        )
