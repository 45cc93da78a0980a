"""Rollouts: one function, :func:`generate`, that turns prompts into completions for the trainers and the
evaluations.

It uses :class:`lmfs.infer.Engine` when that package is importable and falls back to the batched KV-cached
decoder below otherwise; both return :class:`Completion` objects with the same fields (``prompt_ids``,
``token_ids``, ``text``, ``finish_reason``).

The fallback decoder batches prompts of different lengths by **left padding**: every row's prompt ends at the
same column, so one forward call per step serves the whole batch. A wrapper around the model's attention
kernel hides the pad keys from real queries (pad queries may see everything, so no row is ever fully masked and
no NaN appears). RoPE encodes only relative offsets, so a row shifted right by its padding computes the same
attention scores as the unpadded row; results match unbatched decoding up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lmfs.generate.sampling import next_token_distribution


@dataclass(frozen=True)
class SamplingParams:
    """The inference engine's sampling parameters (same names and defaults)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None


@dataclass
class Completion:
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"  # "stop" | "length"


def engine_available() -> bool:
    """Whether :mod:`lmfs.infer` (the batched inference engine) can be imported."""
    try:
        import lmfs.infer
    except ImportError:
        return False
    return hasattr(lmfs.infer, "Engine")


class _PadMaskedAttention:
    """Attention kernel wrapper: real queries never attend to left-pad keys."""

    supports_gqa = True

    def __init__(self, base: Any) -> None:
        self.base = base
        self.valid: Tensor | None = None  # (B, L) bool over every position fed so far

    def __call__(self, q, k, v, *, is_causal, mask=None, scale=None):
        if self.valid is None:
            return self.base(q, k, v, is_causal=is_causal, mask=mask, scale=scale)
        tk, tq = k.shape[-2], q.shape[-2]
        keys = self.valid[:, :tk]
        queries = self.valid[:, tk - tq : tk]
        pad_mask = keys[:, None, None, :] | ~queries[:, None, :, None]  # (B, 1, Tq, Tk)
        mask = pad_mask if mask is None else mask & pad_mask
        return self.base(q, k, v, is_causal=is_causal, mask=mask, scale=scale)


def _top_k_filter(probs: Tensor, k: int) -> Tensor:
    if k <= 0 or k >= probs.shape[-1]:
        return probs
    kth = probs.topk(k, dim=-1).values[..., -1:]
    kept = torch.where(probs >= kth, probs, torch.zeros_like(probs))
    return kept / kept.sum(dim=-1, keepdim=True)


def _stop_text(text: str, stops: Sequence[str]) -> int | None:
    """Index where the earliest stop string starts in ``text``, or None."""
    hits = [i for s in stops if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None


@torch.no_grad()
def decode_batch(
    model: Any,
    tokenizer: Any,
    prompt_ids: Sequence[Sequence[int]],
    params: SamplingParams,
    generator: torch.Generator | None = None,
) -> list[Completion]:
    """Sample completions for a batch of tokenized prompts with one left-padded KV cache.

    Stops a row at any of ``params.stop_token_ids`` (not included in the output), at any of ``params.stop``
    strings (the text is cut before it) or after ``params.max_tokens`` tokens.
    """
    if not prompt_ids:
        return []
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("an empty prompt cannot be continued; give at least one token")
    context = model.config.context_length
    longest = max(len(p) for p in prompt_ids)
    if longest >= context:
        raise ValueError(f"a prompt has {longest} tokens but the model's context is {context}")
    max_new = min(params.max_tokens, context - longest)
    device = model.token_embeddings.weight.device
    batch = len(prompt_ids)
    ids = torch.zeros((batch, longest), dtype=torch.long, device=device)
    valid = torch.zeros((batch, longest + max_new), dtype=torch.bool, device=device)
    for row, p in enumerate(prompt_ids):
        ids[row, longest - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        valid[row, longest - len(p) :] = True
    layers = list(model.layers)
    saved = [layer.attn.attention_fn for layer in layers]
    wrapper = _PadMaskedAttention(saved[0])
    wrapper.valid = valid
    was_training = model.training
    model.eval()
    stop_ids = set(params.stop_token_ids)
    outs: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    reasons = ["length"] * batch
    try:
        for layer in layers:
            layer.attn.attention_fn = wrapper
        cache = model.new_kv_cache(batch_size=batch, max_len=longest + max_new)
        fed = ids
        for _step in range(max_new):
            logits = model(fed, kv_cache=cache)[:, -1, :].float()
            if params.temperature == 0:
                token = logits.argmax(dim=-1)
            else:
                probs = next_token_distribution(logits, params.temperature, params.top_p)
                probs = _top_k_filter(probs, params.top_k)
                token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(device)
            for row in range(batch):
                if done[row]:
                    continue
                tid = int(token[row])
                if tid in stop_ids:
                    done[row], reasons[row] = True, "stop"
                    continue
                outs[row].append(tid)
                if params.stop and _stop_text(tokenizer.decode(outs[row][-16:]), params.stop) is not None:
                    done[row], reasons[row] = True, "stop"
            if all(done):
                break
            fed = token.view(batch, 1)
    finally:
        for layer, fn in zip(layers, saved, strict=True):
            layer.attn.attention_fn = fn
        model.train(was_training)
    completions = []
    for row, p in enumerate(prompt_ids):
        toks = outs[row]
        text = tokenizer.decode(toks)
        cut = _stop_text(text, params.stop) if params.stop else None
        if cut is not None:
            text = text[:cut]
            reasons[row] = "stop"
        completions.append(Completion(list(p), toks, text, reasons[row]))
    return completions


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    params: SamplingParams,
    *,
    max_batch: int = 8,
    generator: torch.Generator | None = None,
    use_engine: bool | None = None,
) -> list[Completion]:
    """Completions for ``prompts`` (strings or token-id lists), in order, ``max_batch`` at a time.

    ``use_engine``: None picks :class:`lmfs.infer.Engine` when it is installed, True requires it, False forces
    the built-in decoder. ``generator`` (or ``params.seed``) makes sampling reproducible: the built-in decoder
    samples from it, the engine gets one seed per request drawn from it. The built-in decoder sorts prompts by
    length inside the call so padding stays small.
    """
    ids = [list(tokenizer.encode(p)) if isinstance(p, str) else list(p) for p in prompts]
    if use_engine is None:
        use_engine = engine_available()
    if use_engine:
        from lmfs.infer import Engine
        from lmfs.infer import SamplingParams as EngineParams

        engine = Engine(model, tokenizer, max_batch=max_batch, max_seq=model.config.context_length)
        if params.seed is None and generator is not None and params.temperature > 0:
            # one seed per request drawn from the caller's generator: reproducible, and resumable with it
            seeds = torch.randint(0, 2**62, (len(ids),), generator=generator).tolist()
        else:
            seeds = [params.seed] * len(ids)
        eparams = [
            EngineParams(
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                max_tokens=params.max_tokens,
                stop=tuple(params.stop),
                stop_token_ids=tuple(params.stop_token_ids),
                seed=seed,
            )
            for seed in seeds
        ]
        got = engine.generate(ids, eparams)
        return [Completion(list(c.prompt_ids), list(c.token_ids), c.text, c.finish_reason) for c in got]
    if generator is None and params.seed is not None:
        generator = torch.Generator().manual_seed(params.seed)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    result: list[Completion | None] = [None] * len(ids)
    for start in range(0, len(order), max_batch):
        chunk = order[start : start + max_batch]
        for i, c in zip(chunk, decode_batch(model, tokenizer, [ids[i] for i in chunk], params, generator),
                        strict=True):
            result[i] = c
    return [c for c in result if c is not None]
