"""Speculative decoding: a small draft model proposes, the target model verifies several tokens in one pass.

Each round the draft samples ``k`` tokens one at a time from its distributions ``q_1..q_k``; the target scores
the committed prefix's newest token plus the ``k`` drafts in *one* forward call, giving ``p_1..p_{k+1}``. Draft
token ``x_i`` is accepted with probability ``min(1, p_i(x_i) / q_i(x_i))``; at the first rejection a token is
drawn from the residual ``max(0, p_i − q_i)`` (renormalized) and the round ends; if all ``k`` are accepted, a
bonus token is drawn from ``p_{k+1}``. Every emitted token is then distributed exactly as sampling from the
target alone (Leviathan et al. 2023; Chen et al. 2023) — with greedy decoding, the output *equals* the target's
greedy output. ``p`` and ``q`` are the sampling distributions after temperature and top-p.

Both models keep a KV cache; a rejection rolls the caches back by truncating them to the accepted prefix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from lmfs.generate.sampling import next_token_distribution


@dataclass
class SpeculativeStats:
    """What a speculative run did: ``accepted / proposed`` is the draft's acceptance rate; ``target_calls`` the
    number of target forward passes (plain decoding needs one per token)."""

    proposed: int = 0
    accepted: int = 0
    target_calls: int = 0
    emitted: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_target_call(self) -> float:
        return self.emitted / self.target_calls if self.target_calls else 0.0


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(probs.double().cpu(), 1, generator=generator).item())


def verify(
    p: torch.Tensor, q: torch.Tensor, drafts: Sequence[int], generator: torch.Generator | None = None
) -> tuple[list[int], int]:
    """One verification: ``p`` (k + 1, V) target and ``q`` (k, V) draft distributions, ``drafts`` the k proposed
    ids. Returns ``(emitted ids, number of drafts accepted)``; emitted = the accepted drafts + one more token."""
    k = len(drafts)
    if p.shape[0] != k + 1 or q.shape[0] != k:
        raise ValueError(f"verify: expected p ({k + 1}, V) and q ({k}, V), got {tuple(p.shape)}, {tuple(q.shape)}")
    p, q = p.double().cpu(), q.double().cpu()
    out: list[int] = []
    for i, x in enumerate(drafts):
        px, qx = p[i, x].item(), q[i, x].item()
        u = torch.rand((), dtype=torch.float64, generator=generator).item()
        if qx > 0 and u * qx < px:  # accept with probability min(1, px / qx)
            out.append(x)
            continue
        residual = (p[i] - q[i]).clamp_min(0.0)
        total = residual.sum()
        # residual mass 0 means p ≤ q everywhere, i.e. p == q: then x was accepted with certainty, never here
        out.append(_draw(residual / total if total > 0 else p[i], generator))
        return out, i
    out.append(_draw(p[k], generator))
    return out, k


@torch.no_grad()
def speculative_generate(
    target: torch.nn.Module,
    draft: torch.nn.Module,
    prompt: Sequence[int],
    max_new_tokens: int,
    *,
    k: int = 4,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    stats: SpeculativeStats | None = None,
) -> Iterator[int]:
    """Yield up to ``max_new_tokens`` ids after ``prompt``, sampled as from ``target``, using ``draft`` to
    propose ``k`` tokens per target call. Both are lmfs ``TransformerLM``s over the same vocabulary; the prompt
    plus the new tokens must fit both context lengths. Stops before yielding ``eos_id``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not prompt:
        raise ValueError("prompt is empty: give at least one token (e.g. <|endoftext|> to start a document)")
    for name, m in (("target", target), ("draft", draft)):
        if not hasattr(m, "new_kv_cache"):
            raise TypeError(f"speculative decoding needs a KV cache: the {name} model has no new_kv_cache()")
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError(
            f"target and draft vocabularies differ ({target.config.vocab_size} vs {draft.config.vocab_size})"
        )
    # drafts never run past the last token we may emit, so the caches hold at most prompt + new tokens
    need = len(prompt) + max_new_tokens
    ctx = min(target.config.context_length, draft.config.context_length)
    if need > ctx:
        raise ValueError(
            f"prompt ({len(prompt)}) + max_new_tokens ({max_new_tokens}) = {need} exceeds the context length "
            f"{ctx}; use lmfs.generate.generate_tokens for longer texts"
        )
    stats = stats if stats is not None else SpeculativeStats()
    states = [(m, m.training) for m in (target, draft)]
    for m, _ in states:
        m.eval()
    t_cache, d_cache = target.new_kv_cache(max_len=need), draft.new_kv_cache(max_len=need)
    ids = list(prompt)  # committed tokens; each cache holds a prefix of them, the rest is fed on the next call

    def dist(logits: torch.Tensor) -> torch.Tensor:
        return next_token_distribution(logits, temperature, top_p)

    def feed(model, cache, tokens: list[int]) -> torch.Tensor:
        return model(torch.tensor([tokens], dtype=torch.long, device=device), kv_cache=cache)[0]

    try:
        emitted = 0
        while emitted < max_new_tokens:
            n = min(k, max_new_tokens - emitted)  # no drafts past the last token we may emit
            drafts: list[int] = []
            qs = []
            pending = ids[d_cache.length :]
            for _ in range(n):
                q = dist(feed(draft, d_cache, pending)[-1])
                x = _draw(q, generator) if temperature > 0 else int(q.argmax())
                qs.append(q)
                drafts.append(x)
                pending = [x]
            p = dist(feed(target, t_cache, ids[t_cache.length :] + drafts))[-(n + 1) :]  # (n + 1, V)
            stats.target_calls += 1
            out, accepted = verify(p, torch.stack(qs), drafts, generator)
            stats.proposed += n
            stats.accepted += accepted
            # keep the cache entries of the committed tokens only: the prefix + the accepted drafts
            t_cache.length = len(ids) + accepted
            d_cache.length = min(d_cache.length, len(ids) + accepted)
            for tid in out:
                if eos_id is not None and tid == eos_id:
                    return
                ids.append(tid)
                emitted += 1
                stats.emitted += 1
                yield tid
                if emitted >= max_new_tokens:
                    return
    finally:
        for m, was_training in states:
            m.train(was_training)
