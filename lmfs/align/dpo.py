"""Direct Preference Optimization: the per-instance DPO loss of Rafailov et al. (2023).

A preference pair is two sequences, ``prompt`` + ``response`` formatted with the Alpaca template and followed by
the tokenizer's EOS. With s(m, y) the summed log-probability of the whole sequence under model m (every token
after the first, given the tokens before it), the loss is

    -log σ(β · ((s(π, y_w) - s(π_ref, y_w)) - (s(π, y_l) - s(π_ref, y_l))))

The prompt tokens are the same in both sequences, so their terms cancel in the difference and scoring the whole
sequence equals scoring the response given the prompt.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lmfs.align.data import format_alpaca
from lmfs.nn.functional import log_softmax


def sequence_ids(tokenizer: Any, prompt: str, response: str) -> list[int]:
    """Ids of ``prompt``/``response`` in the Alpaca template, then the EOS id."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token")
    return [*list(tokenizer.encode(format_alpaca(prompt, response))), int(eos)]


def _model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def sequence_log_prob(model: Any, ids: list[int]) -> Tensor:
    """Summed log p(ids[t] | ids[:t]) over t >= 1 under ``model`` (``model(x).logits``, Hugging Face style)."""
    x = torch.tensor([ids], dtype=torch.long, device=_model_device(model))
    out = model(x)
    logits = out.logits if hasattr(out, "logits") else out
    return log_softmax(logits[0, :-1]).gather(-1, x[0, 1:, None]).sum()


def per_instance_dpo_loss(
    lm: Any,
    lm_ref: Any,
    tokenizer: Any,
    beta: float,
    prompt: str,
    response_chosen: str,
    response_rejected: str,
) -> Tensor:
    """The DPO loss of one preference pair (scalar, differentiable through ``lm``; ``lm_ref`` runs without grad)."""
    chosen = sequence_ids(tokenizer, prompt, response_chosen)
    rejected = sequence_ids(tokenizer, prompt, response_rejected)
    device = _model_device(lm)
    policy = sequence_log_prob(lm, chosen) - sequence_log_prob(lm, rejected)
    with torch.no_grad():
        ref = (sequence_log_prob(lm_ref, chosen) - sequence_log_prob(lm_ref, rejected)).to(device)
    margin = beta * (policy - ref.to(policy.dtype))
    # -log σ(m) = log(1 + exp(-m)), stable for either sign of m
    return torch.logaddexp(torch.zeros_like(margin), -margin)
