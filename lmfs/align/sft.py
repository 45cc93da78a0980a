"""Supervised fine-tuning pieces: prompt/output tokenization, per-token entropy and log-probs, the masked
normalization and one SFT microbatch step. Tensor ops only (no ``torch.nn.functional``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lmfs.nn.functional import log_softmax


def _encode(tokenizer: Any, text: str, add_special_tokens: bool) -> list[int]:
    """Token ids of ``text``; ``add_special_tokens`` is passed on where the tokenizer takes it (Hugging Face)."""
    try:
        return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))
    except TypeError:
        return list(tokenizer.encode(text))


def tokenize_prompt_and_output(
    prompt_strs: Sequence[str], output_strs: Sequence[str], tokenizer: Any
) -> dict[str, Tensor]:
    """Tokenize each prompt and output separately, concatenate, right-pad with ``tokenizer.pad_token_id`` to the
    longest concatenation (length L) and shift by one.

    Returns ``input_ids`` (B, L-1) = ids[:, :-1], ``labels`` (B, L-1) = ids[:, 1:] and ``response_mask`` (B, L-1),
    a bool tensor true where the label is an output token (not a prompt token, not padding).
    """
    if len(prompt_strs) != len(output_strs):
        raise ValueError(f"{len(prompt_strs)} prompts but {len(output_strs)} outputs")
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError("tokenizer.pad_token_id is None; set a pad token (e.g. pad_token = eos_token)")
    prompts = [_encode(tokenizer, p, True) for p in prompt_strs]
    outputs = [_encode(tokenizer, o, False) for o in output_strs]
    lengths = [len(p) + len(o) for p, o in zip(prompts, outputs, strict=True)]
    batch, full_len = len(prompts), max(lengths, default=0)
    if full_len < 2:
        raise ValueError("every prompt + output is shorter than 2 tokens; nothing to predict")
    ids = torch.full((batch, full_len), int(pad_id), dtype=torch.long)
    in_output = torch.zeros((batch, full_len), dtype=torch.bool)
    for row, (p, o) in enumerate(zip(prompts, outputs, strict=True)):
        ids[row, : len(p) + len(o)] = torch.tensor(p + o, dtype=torch.long)
        in_output[row, len(p) : len(p) + len(o)] = True
    return {"input_ids": ids[:, :-1], "labels": ids[:, 1:], "response_mask": in_output[:, 1:]}


def _entropy(log_p: Tensor) -> Tensor:
    """Entropy from log-probabilities over the last dim; terms with probability 0 count as 0."""
    p = log_p.exp()
    terms = torch.where(p > 0, p * log_p, torch.zeros((), dtype=log_p.dtype, device=log_p.device))
    return -terms.sum(dim=-1)


def compute_entropy(logits: Tensor) -> Tensor:
    """Entropy of softmax(logits) over the last dim: (..., V) -> (...). Stable for large logits (the max is
    taken out before the log-sum-exp); terms with probability 0 (e.g. logits of -inf) count as 0."""
    return _entropy(log_softmax(logits))


def get_response_log_probs(
    model: Any, input_ids: Tensor, labels: Tensor, return_token_entropy: bool = False
) -> dict[str, Tensor]:
    """Per-token log p(label | prefix) under a causal LM called as ``model(input_ids).logits`` (B, T, V).

    Returns ``log_probs`` (B, T) and, if asked, ``token_entropy`` (B, T) of each next-token distribution.
    """
    log_p = log_softmax(model(input_ids).logits)
    out = {"log_probs": torch.gather(log_p, -1, labels.unsqueeze(-1)).squeeze(-1)}
    if return_token_entropy:
        out["token_entropy"] = _entropy(log_p)
    return out


def masked_normalize(
    tensor: Tensor, mask: Tensor, dim: int | None = None, normalize_constant: float = 1.0
) -> Tensor:
    """Sum of ``tensor`` where ``mask`` is true (over ``dim``, or all elements if None), divided by
    ``normalize_constant``. Masked-out elements contribute exactly 0."""
    kept = torch.where(mask.bool(), tensor, torch.zeros((), dtype=tensor.dtype, device=tensor.device))
    total = kept.sum() if dim is None else kept.sum(dim=dim)
    return total / normalize_constant


def sft_microbatch_train_step(
    policy_log_probs: Tensor,
    response_mask: Tensor,
    gradient_accumulation_steps: int,
    normalize_constant: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Negative log-likelihood of the response tokens of one microbatch, backpropagated.

    ``policy_log_probs``, ``response_mask``: (B, T). loss = mean over the batch of
    -masked_normalize(log_probs, mask, dim=-1, normalize_constant), divided by ``gradient_accumulation_steps``.
    Calls ``loss.backward()``; returns (loss, metadata).
    """
    per_example = -masked_normalize(policy_log_probs, response_mask, dim=-1, normalize_constant=normalize_constant)
    loss = per_example.mean() / gradient_accumulation_steps
    loss.backward()
    with torch.no_grad():
        n_tokens = response_mask.bool().sum()
        metadata = {
            "num_response_tokens": n_tokens,
            "mean_response_log_prob": masked_normalize(policy_log_probs.detach(), response_mask)
            / n_tokens.clamp(min=1),
        }
    return loss, metadata
