"""Prompt in, text out: tokenize, sample, stream the decoded pieces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lmfs.generate.load import eot_id
from lmfs.generate.sampling import generate_tokens
from lmfs.generate.stream import TextStreamer


def generate_text(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int = 200,
    *,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int | None = None,
    on_text: Callable[[str], None] | None = None,
    device: str | torch.device = "cpu",
    kv_cache: bool = True,
    draft: torch.nn.Module | None = None,
    draft_k: int = 4,
    stats: Any = None,
) -> str:
    """Continue ``prompt``; returns the generated text (without the prompt), calling ``on_text`` with each
    decoded piece as it appears. Stops at ``<|endoftext|>`` or after ``max_new_tokens`` tokens. An empty
    prompt starts a new document (from ``<|endoftext|>``). With a ``draft`` model, tokens come from
    :func:`~lmfs.generate.speculative.speculative_generate` (same distribution, fewer target passes; ``stats``
    takes a :class:`~lmfs.generate.speculative.SpeculativeStats`)."""
    eos = eot_id(tokenizer)
    ids = tokenizer.encode(prompt) if prompt else []
    if not ids:
        if eos is None:
            raise ValueError(
                "empty prompt and the tokenizer has no <|endoftext|> to start from; give a prompt"
            )
        ids = [eos]
    vocab = model.config.vocab_size
    if max(ids) >= vocab:
        raise ValueError(
            f"prompt token id {max(ids)} is outside the model's vocabulary of {vocab}; "
            "use the tokenizer the run was trained with"
        )
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    context = model.config.context_length
    streamer = TextStreamer(tokenizer)
    pieces: list[str] = []
    if draft is not None:
        from lmfs.generate.speculative import speculative_generate

        tokens = speculative_generate(
            model,
            draft,
            ids,
            max_new_tokens,
            k=draft_k,
            temperature=temperature,
            top_p=top_p,
            eos_id=eos,
            generator=generator,
            device=device,
            stats=stats,
        )
    else:
        tokens = generate_tokens(
            model,
            ids,
            max_new_tokens,
            context_length=context,
            temperature=temperature,
            top_p=top_p,
            eos_id=eos,
            generator=generator,
            device=device,
            kv_cache=kv_cache,
        )
    for tid in tokens:
        piece = streamer.push(tid)
        if piece:
            pieces.append(piece)
            if on_text:
                on_text(piece)
    tail = streamer.flush()
    if tail:
        pieces.append(tail)
        if on_text:
            on_text(tail)
    return "".join(pieces)
