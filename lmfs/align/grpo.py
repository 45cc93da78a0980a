"""GRPO pieces: group-normalized rewards, the policy-gradient losses (no baseline, REINFORCE with a baseline,
GRPO-Clip), the masked mean and one GRPO microbatch step. Tensor ops only (no ``torch.nn.functional``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

LOSS_TYPES: tuple[str, ...] = ("no_baseline", "reinforce_with_baseline", "grpo_clip")


def compute_group_normalized_rewards(
    reward_fn: Callable[[str, str], dict[str, float]],
    rollout_responses: Sequence[str],
    repeated_ground_truths: Sequence[str],
    group_size: int,
    advantage_eps: float,
    normalize_by_std: bool,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Score each rollout with ``reward_fn(response, ground_truth)["reward"]`` and normalize within its group
    (consecutive runs of ``group_size`` rollouts): subtract the group mean and, if ``normalize_by_std``, divide by
    (group std + ``advantage_eps``), std being torch's default (unbiased, n-1).

    Returns (advantages (N,), raw_rewards (N,), metadata) with N = len(rollout_responses), float32.
    """
    n = len(rollout_responses)
    if n != len(repeated_ground_truths):
        raise ValueError(f"{n} responses but {len(repeated_ground_truths)} ground truths")
    if group_size < 1 or n % group_size:
        raise ValueError(f"{n} rollouts do not split into groups of {group_size}")
    raw = torch.tensor(
        [float(reward_fn(r, g)["reward"]) for r, g in zip(rollout_responses, repeated_ground_truths, strict=True)],
        dtype=torch.float32,
    )
    groups = raw.view(-1, group_size)
    centered = groups - groups.mean(dim=-1, keepdim=True)
    if normalize_by_std:
        centered = centered / (groups.std(dim=-1, keepdim=True) + advantage_eps)
    advantages = centered.reshape(-1)
    metadata = {
        "reward_mean": raw.mean().item() if n else 0.0,
        "reward_std": raw.std().item() if n > 1 else 0.0,
        "reward_max": raw.max().item() if n else 0.0,
        "reward_min": raw.min().item() if n else 0.0,
    }
    return advantages, raw, metadata


def compute_naive_policy_gradient_loss(raw_rewards_or_advantages: Tensor, policy_log_probs: Tensor) -> Tensor:
    """Per-token policy-gradient loss -A * log p: (B, 1) and (B, T) -> (B, T)."""
    return -raw_rewards_or_advantages * policy_log_probs


def compute_grpo_clip_loss(
    advantages: Tensor, policy_log_probs: Tensor, old_log_probs: Tensor, cliprange: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token GRPO-Clip loss -min(r A, clip(r, 1-eps, 1+eps) A) with r = exp(log p - log p_old).

    ``advantages`` (B, 1); ``policy_log_probs``, ``old_log_probs`` (B, T). Returns (loss (B, T), metadata):
    ``clipped`` (B, T) bool, true where the clipped term is strictly smaller (it is the one taken), and
    ``clip_fraction``, its mean.
    """
    ratio = torch.exp(policy_log_probs - old_log_probs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange) * advantages
    loss = -torch.minimum(unclipped, clipped)
    was_clipped = (clipped < unclipped).detach()
    return loss, {"clipped": was_clipped, "clip_fraction": was_clipped.float().mean()}


def compute_policy_gradient_loss(
    policy_log_probs: Tensor,
    loss_type: str,
    raw_rewards: Tensor | None = None,
    advantages: Tensor | None = None,
    old_log_probs: Tensor | None = None,
    cliprange: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token loss (B, T) for ``loss_type``: "no_baseline" (needs ``raw_rewards`` (B, 1)),
    "reinforce_with_baseline" (needs ``advantages`` (B, 1)) or "grpo_clip" (needs ``advantages``,
    ``old_log_probs`` (B, T) and ``cliprange``). Raises ValueError for an unknown type or a missing argument."""
    if loss_type == "no_baseline":
        if raw_rewards is None:
            raise ValueError("loss_type 'no_baseline' needs raw_rewards")
        return compute_naive_policy_gradient_loss(raw_rewards, policy_log_probs), {}
    if loss_type == "reinforce_with_baseline":
        if advantages is None:
            raise ValueError("loss_type 'reinforce_with_baseline' needs advantages")
        return compute_naive_policy_gradient_loss(advantages, policy_log_probs), {}
    if loss_type == "grpo_clip":
        missing = [
            name
            for name, value in (("advantages", advantages), ("old_log_probs", old_log_probs), ("cliprange", cliprange))
            if value is None
        ]
        if missing:
            raise ValueError(f"loss_type 'grpo_clip' needs {', '.join(missing)}")
        return compute_grpo_clip_loss(advantages, policy_log_probs, old_log_probs, cliprange)  # type: ignore[arg-type]
    raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {', '.join(LOSS_TYPES)}")


def masked_mean(tensor: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``tensor`` over the elements where ``mask`` is true, over ``dim`` (all elements if None).
    A slice with no true element gives nan (0 / 0)."""
    m = mask.bool()
    kept = torch.where(m, tensor, torch.zeros((), dtype=tensor.dtype, device=tensor.device))
    if dim is None:
        return kept.sum() / m.sum()
    return kept.sum(dim=dim) / m.sum(dim=dim)


def grpo_microbatch_train_step(
    policy_log_probs: Tensor,
    response_mask: Tensor,
    gradient_accumulation_steps: int,
    loss_type: str,
    raw_rewards: Tensor | None = None,
    advantages: Tensor | None = None,
    old_log_probs: Tensor | None = None,
    cliprange: float | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """One GRPO microbatch: the per-token loss of ``loss_type``, masked-mean over each sequence's response
    tokens, mean over the batch, divided by ``gradient_accumulation_steps``; calls ``loss.backward()``.

    ``policy_log_probs``, ``response_mask`` (B, T). Returns (loss, metadata of the loss function).
    """
    per_token, metadata = compute_policy_gradient_loss(
        policy_log_probs, loss_type, raw_rewards, advantages, old_log_probs, cliprange
    )
    loss = masked_mean(per_token, response_mask, dim=-1).mean() / gradient_accumulation_steps
    loss.backward()
    return loss, dict(metadata)
