"""FlashAttention-2 in Triton (``get_flashattention_autograd_function_triton``): forward, L and backward against
the reference. On a CPU box these run through the Triton interpreter (see conftest.py), on small shapes."""

from __future__ import annotations

import pytest
import torch

from specs.kernels.checks import check_backward, check_forward, random_qkv

pytestmark = pytest.mark.triton

TOL = 1e-2  # the contract: 1e-2 vs the reference on fp32 (Triton's fp32 dot is tf32 on a GPU)
SHAPES = [(2, 32, 32, 16), (1, 37, 37, 32), (2, 20, 45, 16)]


def _fn(adapter):
    return adapter.get_flashattention_autograd_function_triton()


@pytest.mark.points(3)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_reference(adapter, triton_device, shape, is_causal):
    if is_causal and shape[1] != shape[2]:
        pytest.skip("causal attention is specified for n_queries == n_keys")
    check_forward(_fn(adapter), shape, is_causal, TOL, device=triton_device)


@pytest.mark.points(3)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_backward_matches_reference(adapter, triton_device, shape, is_causal):
    if is_causal and shape[1] != shape[2]:
        pytest.skip("causal attention is specified for n_queries == n_keys")
    check_backward(_fn(adapter), shape, is_causal, TOL, device=triton_device)


@pytest.mark.points(1)
def test_fp16_forward_and_backward(adapter, triton_device):
    check_forward(_fn(adapter), (1, 40, 40, 16), True, 2e-2, device=triton_device, dtype=torch.float16)
    check_backward(_fn(adapter), (1, 40, 40, 16), True, 2e-2, device=triton_device, dtype=torch.float16)


@pytest.mark.points(1)
def test_saves_one_logsumexp_tensor(adapter, triton_device):
    q, k, v = random_qkv(2, 24, 24, 16, device=triton_device)
    out = _fn(adapter).apply(q, k, v, False)
    lse = [t for t in out.grad_fn.saved_tensors if tuple(t.shape) == (2, 24)]
    assert len(lse) == 1
