"""lmfs's Llama-shaped models agree with Hugging Face ``LlamaForCausalLM`` on the same weights (skips without
transformers): checks the fused QKV split, GQA grouping and the interleaved ↔ half-split RoPE permutation."""

from __future__ import annotations

import pytest
import torch

from lmfs.nn import TransformerConfig, TransformerLM
from lmfs.nn.llama_loader import hf_llama_config_kwargs, to_hf_llama_state_dict


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_logits_match_hf_llama(kv_heads):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = TransformerConfig(
        vocab_size=97,
        context_length=24,
        d_model=32,
        num_layers=2,
        num_heads=4,
        d_ff=48,
        num_kv_heads=kv_heads,
        rope_theta=500.0,
    )
    model = TransformerLM(cfg)
    with torch.no_grad():  # non-trivial gains so that a mis-mapped norm would show
        for name, p in model.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_final.weight")):
                p.uniform_(0.5, 1.5)
    hf_cfg = transformers.LlamaConfig(**hf_llama_config_kwargs(cfg))
    hf_cfg._attn_implementation = "eager"
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    hf.load_state_dict(to_hf_llama_state_dict(model.state_dict(), cfg), strict=True)
    ids = torch.randint(0, 97, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(input_ids=ids).logits, rtol=1e-4, atol=1e-5)
