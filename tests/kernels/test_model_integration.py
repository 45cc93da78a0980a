"""FlashAttention swapped into the Transformer LM through its ``attention_fn`` seam gives the same logits and
gradients as the model's own attention."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lmfs.kernels.attention_backends import make_attention

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("backend", ["pytorch", pytest.param("triton", marks=[pytest.mark.triton, needs_triton])])
def test_model_with_flash_attention_matches_default(backend):
    from lmfs.nn import TransformerConfig, TransformerLM

    device = DEVICE if backend == "triton" else "cpu"
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=50, context_length=24, d_model=32, num_layers=2, num_heads=2, d_ff=64)
    model = TransformerLM(cfg, device=device)
    tokens = torch.randint(0, 50, (2, 21), device=device)

    def run():
        model.zero_grad(set_to_none=True)
        logits = model(tokens)
        logits.float().logsumexp(-1).mean().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    ref_logits, ref_grads = run()
    model.set_attention_fn(make_attention(backend))
    logits, grads = run()
    tol = 2e-2 if device == "cuda" else 1e-4
    torch.testing.assert_close(logits, ref_logits, rtol=tol, atol=tol)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=tol, atol=tol)
