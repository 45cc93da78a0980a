"""FLOPs of one training step: against FlopCounterMode on a real forward/backward of a reference model."""

from __future__ import annotations

import pytest

from specs.scaling.reference import reference_lm_flops

SHAPES = [
    # vocab, context, d_model, layers, heads, d_ff, batch
    (512, 64, 64, 2, 4, 176, 2),
    (1000, 128, 128, 3, 8, 344, 1),
    (256, 32, 96, 4, 6, 256, 3),
]


@pytest.mark.points(3)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"V{s[0]}-T{s[1]}-d{s[2]}-L{s[3]}")
def test_training_flops_match_flop_counter(adapter, shape):
    """FlopCounterMode counts matmuls only; an exact count may add elementwise work (softmax, norms, …), which
    is a few percent at these shapes, never less than the matmuls."""
    fwd, fwd_bwd = reference_lm_flops(*shape)
    assert fwd_bwd == 3 * fwd  # the reference itself: backward = 2 × forward for every matmul
    got = adapter.run_training_flops(*shape)
    ratio = got / fwd_bwd
    assert 0.999 <= ratio <= 1.08, f"run_training_flops = {got:.6g}, FlopCounterMode fwd+bwd = {fwd_bwd:.6g}"


@pytest.mark.points(1)
def test_training_flops_linear_in_batch(adapter):
    base = (512, 64, 64, 2, 4, 176)
    one = adapter.run_training_flops(*base, 1)
    assert adapter.run_training_flops(*base, 7) == pytest.approx(7 * one, rel=1e-12)


@pytest.mark.points(1)
def test_training_flops_grow_with_every_dimension(adapter):
    base = dict(
        vocab_size=512, context_length=64, d_model=64, num_layers=2, num_heads=4, d_ff=176, batch_size=2
    )
    f0 = adapter.run_training_flops(**base)
    for key, bigger in (
        ("vocab_size", 1024),
        ("context_length", 128),
        ("d_model", 128),
        ("num_layers", 3),
        ("d_ff", 256),
    ):
        assert adapter.run_training_flops(**{**base, key: bigger}) > f0, key
