"""Per-request sampling parameters and the filters that turn one row of logits into a token."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lmfs.generate.sampling import top_p_filter


@dataclass(frozen=True)
class SamplingParams:
    """How one request is sampled.

    ``temperature`` 0 is greedy (argmax); ``top_k`` 0 keeps every token; ``top_p`` 1 keeps every token.
    ``max_tokens``: the most new tokens. ``stop``: strings that end the completion (the text stops before the
    first one; its tokens stay in ``token_ids``). ``stop_token_ids``: ids that end it (not included in the
    output). ``seed``: a per-request generator, so the same request samples the same text whatever else is in
    the batch (greedy needs none).
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))
        problems = []
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)) or (
            self.temperature < 0
        ):
            problems.append(
                f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}"
            )
        if not (isinstance(self.top_p, (int, float)) and 0.0 < self.top_p <= 1.0):
            problems.append(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            problems.append(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 0:
            problems.append(f"max_tokens must be an integer >= 0, got {self.max_tokens!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            problems.append(f"stop must be non-empty strings, got {self.stop!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            problems.append(f"seed must be an integer or None, got {self.seed!r}")
        if problems:
            raise ValueError("SamplingParams: " + "; ".join(problems))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def sampling_probs(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution (V,) one request samples from: logits / temperature, top-k, then top-p (float32)."""
    logits = logits.float()
    if params.greedy:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    scaled = logits / params.temperature
    if 0 < params.top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, params.top_k, dim=-1).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    return top_p_filter(probs, params.top_p)


def sample_row(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> tuple[int, torch.Tensor | None]:
    """One token id from one row of logits (V,); also the sampling distribution (None when greedy)."""
    if params.greedy:
        return int(logits.argmax()), None
    probs = sampling_probs(logits, params)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator)), probs
