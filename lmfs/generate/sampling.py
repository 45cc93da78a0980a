"""Sampling the next token: temperature and nucleus (top-p) filtering, and the autoregressive loop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p``; renormalize.

    probs: (..., V) rows summing to 1. Returns (..., V). The most likely token is always kept; ties at the
    boundary are broken by sort order.
    """
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_p >= 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    sorted_probs = torch.where(mass_before < top_p, sorted_probs, torch.zeros_like(sorted_probs))
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


def next_token_distribution(
    logits: torch.Tensor, temperature: float = 1.0, top_p: float = 1.0
) -> torch.Tensor:
    """The sampling distribution (..., V) for logits (..., V): softmax(logits / temperature), top-p filtered.

    ``temperature == 0`` is greedy: a one-hot on the argmax.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    logits = logits.float()
    if temperature == 0:
        return torch.zeros_like(logits).scatter(-1, logits.argmax(dim=-1, keepdim=True), 1.0)
    scaled = logits / temperature
    scaled = scaled - scaled.amax(dim=-1, keepdim=True)
    probs = scaled.exp()
    probs = probs / probs.sum(dim=-1, keepdim=True)
    return top_p_filter(probs, top_p)


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token id per row: logits (B, V) -> (B,) long."""
    probs = next_token_distribution(logits, temperature, top_p)
    if temperature == 0:
        return probs.argmax(dim=-1)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)


@torch.no_grad()
def generate_tokens(
    model: torch.nn.Module,
    prompt: Sequence[int],
    max_new_tokens: int,
    *,
    context_length: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    kv_cache: bool = True,
) -> Iterator[int]:
    """Yield up to ``max_new_tokens`` sampled token ids after ``prompt``, one at a time. Stops before yielding
    ``eos_id``. ``model(ids (1, T)) -> logits (1, T, V)``.

    Without a KV cache (``kv_cache=False``, or a model without ``new_kv_cache``) the model sees the last
    ``context_length`` tokens at every step. With one (lmfs's TransformerLM), the prompt is fed once and each
    step feeds only the newest token — the same logits up to rounding while the sequence fits the context. When
    the cache is full it is refilled from the last three quarters of the context, so a step sees between 3/4 and
    all of the context rather than exactly the last ``context_length`` tokens.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not prompt:
        raise ValueError("prompt is empty: give at least one token (e.g. <|endoftext|> to start a document)")
    ids = torch.tensor([list(prompt)], dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    cache = None
    if kv_cache and hasattr(model, "new_kv_cache"):
        # no longer than this generation can use: a long-context model need not hold its whole context in memory
        cache = model.new_kv_cache(batch_size=1, max_len=min(context_length, len(prompt) + max_new_tokens))
    refill = context_length - context_length // 4  # tokens kept when a full cache is rebuilt
    if cache is not None:
        refill = max(1, min(refill, cache.max_len - 1))
    try:
        fed = ids[:, -context_length:]  # what the next forward call feeds
        for _ in range(max_new_tokens):
            if cache is None:
                logits = model(ids[:, -context_length:])[:, -1, :]  # (1, V)
            else:
                if cache.length + fed.shape[1] > cache.max_len:
                    cache.reset()
                    fed = ids[:, -refill:]
                logits = model(fed, kv_cache=cache)[:, -1, :]
            token = sample_next_token(logits, temperature, top_p, generator)
            tid = int(token.item())
            if eos_id is not None and tid == eos_id:
                return
            yield tid
            ids = torch.cat([ids, token.view(1, 1)], dim=1)
            fed = token.view(1, 1)
    finally:
        model.train(was_training)
