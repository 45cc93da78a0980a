"""Properties every FlashAttention implementation has, whatever the inputs (hypothesis):

* permuting the batch permutes the outputs (batch elements never mix);
* with causal masking, the output at position t does not depend on keys/values after t;
* each output row is a convex combination of V rows, so it lies within V's per-column min and max.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

IMPLS = {
    "pytorch": ("get_flashattention_autograd_function_pytorch", 20),
    "triton": ("get_flashattention_autograd_function_triton", 6),  # interpreter: few, small examples
}


def _impl(adapter, request, name: str):
    getter, _ = IMPLS[name]
    device = "cpu"
    if name == "triton":
        device = request.getfixturevalue("triton_device")
    return getattr(adapter, getter)(), device


def _qkv(seed: int, batch: int, n: int, d: int, device: str, scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    return tuple((scale * torch.randn(batch, n, d, generator=gen)).to(device) for _ in range(3))


shapes = st.tuples(st.integers(1, 3), st.integers(1, 40), st.sampled_from([16, 32]))
seeds = st.integers(0, 2**31 - 1)


def _for_each_impl(test):
    """Parametrize over the implementations, bounding hypothesis examples (the interpreter is slow)."""
    params = [pytest.param(n, marks=[pytest.mark.triton] if n == "triton" else []) for n in IMPLS]
    return pytest.mark.parametrize("impl", params)(test)


def _limited(impl: str):
    return settings(max_examples=IMPLS[impl][1], deadline=None)


@pytest.mark.points(2)
@_for_each_impl
def test_batch_permutation_equivariance(adapter, request, impl):
    fn, device = _impl(adapter, request, impl)

    @_limited(impl)
    @given(shape=shapes, seed=seeds, causal=st.booleans())
    def prop(shape, seed, causal):
        batch, n, d = shape
        q, k, v = _qkv(seed, batch, n, d, device)
        perm = torch.randperm(batch, generator=torch.Generator().manual_seed(seed))
        out = fn.apply(q, k, v, causal)
        out_perm = fn.apply(q[perm], k[perm], v[perm], causal)
        torch.testing.assert_close(out_perm, out[perm], rtol=1e-5, atol=1e-5)

    prop()


@pytest.mark.points(2)
@_for_each_impl
def test_causal_output_ignores_the_future(adapter, request, impl):
    fn, device = _impl(adapter, request, impl)

    @_limited(impl)
    @given(shape=shapes, seed=seeds, data=st.data())
    def prop(shape, seed, data):
        batch, n, d = shape
        t = data.draw(st.integers(0, n - 1), label="t")
        q, k, v = _qkv(seed, batch, n, d, device)
        k2, v2 = k.clone(), v.clone()
        k2[:, t + 1 :] = 10 * torch.randn_like(k2[:, t + 1 :])  # rewrite the future with large, different values
        v2[:, t + 1 :] = -v2[:, t + 1 :] + 5
        out = fn.apply(q, k, v, True)
        out2 = fn.apply(q, k2, v2, True)
        torch.testing.assert_close(out2[:, : t + 1], out[:, : t + 1], rtol=1e-5, atol=1e-5)

    prop()


@pytest.mark.points(2)
@_for_each_impl
def test_outputs_are_convex_combinations_of_values(adapter, request, impl):
    fn, device = _impl(adapter, request, impl)

    @_limited(impl)
    @given(shape=shapes, seed=seeds, causal=st.booleans(), scale=st.sampled_from([0.1, 1.0, 8.0]))
    def prop(shape, seed, causal, scale):
        batch, n, d = shape
        q, k, v = _qkv(seed, batch, n, d, device, scale)
        out = fn.apply(q, k, v, causal)
        assert torch.isfinite(out).all()
        slack = (2e-3 if device == "cuda" else 1e-4) * (1 + v.abs().amax())  # tf32 dots on a GPU round V
        lo = v.amin(dim=1, keepdim=True) - slack
        hi = v.amax(dim=1, keepdim=True) + slack
        assert (out >= lo).all() and (out <= hi).all(), "an output left the [min V, max V] box of its column"

    prop()
