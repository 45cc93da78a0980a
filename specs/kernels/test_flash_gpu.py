"""On a GPU: both FlashAttention implementations in bf16 against ``F.scaled_dot_product_attention``
(the peer used as reference here), forward and backward, several head dims, causal and not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.gpu

GETTERS = ["get_flashattention_autograd_function_triton", "get_flashattention_autograd_function_pytorch"]


def _bf16_case(batch: int, n: int, d: int, seed: int):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(batch, n, d, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_(True)
            for _ in range(3)]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.points(3)
@pytest.mark.parametrize("getter", GETTERS, ids=["triton", "pytorch"])
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("n,d", [(1024, 64), (1000, 128), (517, 16), (2048, 96)])
def test_bf16_matches_sdpa(adapter, getter, is_causal, n, d):
    if getter.endswith("pytorch") and n > 1024:
        pytest.skip("the tiled PyTorch version is a reference, kept to short sequences")
    fn = getattr(adapter, getter)()
    q, k, v = _bf16_case(4, n, d, seed=n + d)
    grad = torch.randn(4, n, d, device="cuda", dtype=torch.bfloat16)
    out = fn.apply(q, k, v, is_causal)
    out.backward(grad)
    mine = [out.detach()] + [x.grad for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    ref_out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    ref_out.backward(grad)
    ref = [ref_out.detach()] + [x.grad for x in (q, k, v)]
    for name, a, b in zip(("O", "dQ", "dK", "dV"), mine, ref, strict=True):
        assert a.dtype == torch.bfloat16 and torch.isfinite(a.float()).all(), f"{name} not finite bf16"
        assert _rel_err(a, b) < 2e-2, f"{name}: relative error {_rel_err(a, b):.3g} vs SDPA"
