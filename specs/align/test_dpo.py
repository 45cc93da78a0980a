"""Specs for the per-instance DPO loss.

Each sequence is the Alpaca-formatted prompt + response followed by EOS; its score under a model is the summed
log-probability of every token after the first (``model(ids).logits``, Hugging Face style). The loss is
-log σ(β((π(y_w) - π_ref(y_w)) - (π(y_l) - π_ref(y_l)))). The reference scores each next token with its own
forward pass over the prefix (no shifted-logits bookkeeping). Models: two tiny random Llamas in float64.
"""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch

from specs.align import reference_dpo as ref

PAIRS = [
    ("The quick brown fox jumps over", "the lazy dog.", "their crazy frog."),
    (
        "What is the capital of France?",
        "Paris is the capital of France.",
        "I think it might be Lyon, or Marseille",
    ),
]
BETAS = [0.05, 0.1, 0.5]


@cache
def _models():
    transformers = pytest.importorskip("transformers")
    tok = ref.gpt2_tokenizer()
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.5,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(transformers.LlamaForCausalLM(cfg).double().eval())
    return tok, models[0], models[1]


@cache
def _scores(pair: int) -> tuple[float, float, float, float]:
    """(π(y_w), π_ref(y_w), π(y_l), π_ref(y_l)) from the per-prefix loop."""
    tok, lm, lm_ref = _models()
    prompt, chosen, rejected = PAIRS[pair]
    w = ref.document_ids(tok, prompt, chosen)
    lo = ref.document_ids(tok, prompt, rejected)
    return (
        ref.sequence_log_prob_loop(lm, w),
        ref.sequence_log_prob_loop(lm_ref, w),
        ref.sequence_log_prob_loop(lm, lo),
        ref.sequence_log_prob_loop(lm_ref, lo),
    )


def _loss(adapter, lm, lm_ref, tok, beta, prompt, chosen, rejected) -> torch.Tensor:
    loss = adapter.run_compute_per_instance_dpo_loss(
        lm=lm,
        lm_ref=lm_ref,
        tokenizer=tok,
        beta=beta,
        prompt=prompt,
        response_chosen=chosen,
        response_rejected=rejected,
    )
    assert isinstance(loss, torch.Tensor) and loss.numel() == 1
    return loss


@pytest.mark.points(3)
@pytest.mark.parametrize("pair", range(len(PAIRS)))
def test_dpo_loss_matches_per_prefix_reference(adapter, pair):
    tok, lm, lm_ref = _models()
    scores = _scores(pair)
    for beta in BETAS:
        got = float(_loss(adapter, lm, lm_ref, tok, beta, *PAIRS[pair]).detach())
        want = ref.dpo_loss(beta, *scores)
        assert math.isclose(got, want, rel_tol=1e-7, abs_tol=1e-9), f"beta={beta}: {got} != {want}"


@pytest.mark.points(1)
def test_dpo_loss_is_log2_when_policy_is_reference(adapter):
    tok, lm, _ = _models()
    for prompt, chosen, rejected in PAIRS:
        got = float(_loss(adapter, lm, lm, tok, 0.1, prompt, chosen, rejected).detach())
        assert math.isclose(got, math.log(2), rel_tol=0, abs_tol=1e-9)


@pytest.mark.points(1)
def test_dpo_swapping_chosen_and_rejected_flips_the_margin(adapter):
    """σ(m) + σ(-m) = 1, and loss(w, l) - loss(l, w) = -β·m with m the reference margin."""
    tok, lm, lm_ref = _models()
    beta = 0.1
    prompt, chosen, rejected = PAIRS[0]
    a = float(_loss(adapter, lm, lm_ref, tok, beta, prompt, chosen, rejected).detach())
    b = float(_loss(adapter, lm, lm_ref, tok, beta, prompt, rejected, chosen).detach())
    assert math.isclose(math.exp(-a) + math.exp(-b), 1.0, abs_tol=1e-9)
    pi_w, ref_w, pi_l, ref_l = _scores(0)
    assert math.isclose(a - b, -beta * ((pi_w - ref_w) - (pi_l - ref_l)), rel_tol=1e-7, abs_tol=1e-9)


@pytest.mark.points(2)
def test_dpo_loss_gradient_reaches_the_policy(adapter):
    """The loss is differentiable in the policy's parameters, with the gradient of the reference formula."""
    tok, lm, lm_ref = _models()
    beta = 0.1
    prompt, chosen, rejected = PAIRS[1]
    params = [p for p in lm.parameters() if p.requires_grad]
    lm.zero_grad()
    _loss(adapter, lm, lm_ref, tok, beta, prompt, chosen, rejected).sum().backward()
    got = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    lm.zero_grad()
    lm_ref.zero_grad()
    w = ref.document_ids(tok, prompt, chosen)
    lo = ref.document_ids(tok, prompt, rejected)
    with torch.no_grad():
        ref_margin = ref.sequence_log_prob_autograd(lm_ref, w) - ref.sequence_log_prob_autograd(lm_ref, lo)
    margin = beta * (
        ref.sequence_log_prob_autograd(lm, w) - ref.sequence_log_prob_autograd(lm, lo) - ref_margin
    )
    want = torch.autograd.grad(-torch.nn.functional.logsigmoid(margin), params)
    lm.zero_grad()
    assert any(g.abs().sum() > 0 for g in got), "no gradient reached the policy"
    for g, h in zip(got, want, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-6, atol=1e-10)
