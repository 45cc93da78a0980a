"""Speculative decoding inside the engine, with the exact acceptance rule of
:func:`lmfs.generate.speculative.verify`.

Each engine step, every busy slot gets ``k`` draft tokens; the target scores ``[pending, d_1 … d_k]`` of all
slots in one batched forward (``T = k + 1`` positions per row, written into the static cache at the row's
positions); each row then accepts a prefix of its drafts (accept ``d_i`` with probability
``min(1, p_i(d_i) / q_i(d_i))``, else draw from the residual) and emits one more token. Emitted tokens are
distributed exactly as sampling from the target with the request's own parameters — greedy output is the
target's greedy output. The cache needs no rollback: entries past a row's new length are stale and masked.

Drafts:

* ``layers:N`` — **self-speculation**: the target's own first N layers, then its final norm and LM head (an
  early exit). The draft reads and writes the target's cache of those layers (same weights, same inputs, so the
  same keys/values; verification rewrites them anyway), so it needs no memory of its own.
* ``ngram`` / ``ngram:N`` — **prompt lookup**: the k tokens that followed the latest earlier occurrence of the
  sequence's last N (default 3, falling back to shorter) tokens; free to compute, it pays on text that
  repeats its context (extraction, code edits, quoting). A deterministic draft is a one-hot ``q``.
"""

from __future__ import annotations

from typing import Any

import torch

from lmfs.generate.speculative import verify
from lmfs.infer.sampling import sampling_probs


def make_draft(spec: Any, engine, k: int):
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"draft_k must be a positive integer, got {k!r}")
    if isinstance(spec, str):
        kind, _, arg = spec.partition(":")
        if kind == "layers":
            n = int(arg) if arg.isdigit() else -1
            if not 1 <= n < len(engine.model.layers):
                raise ValueError(
                    f"draft 'layers:N' needs 1 <= N < {len(engine.model.layers)} (the target's layers), got {spec!r}"
                )
            return SpeculativeDecoder(engine, k, EarlyExitDraft(engine, n))
        if kind == "ngram":
            n = int(arg) if arg.isdigit() else 3
            if (arg and not arg.isdigit()) or n < 1:
                raise ValueError(f"draft 'ngram:N' needs N >= 1, got {spec!r}")
            return SpeculativeDecoder(engine, k, NgramDraft(n))
    raise ValueError(
        f"unknown draft {spec!r}: use 'layers:N' (self-speculation) or 'ngram[:N]' (prompt lookup)"
    )


class NgramDraft:
    deterministic = True

    def __init__(self, n: int = 3) -> None:
        self.n = n

    def propose(self, engine, busy: list[int], k: int) -> tuple[list[list[int]], None]:
        out = []
        for s in busy:
            r = engine.slots[s]
            seq = r.prompt_ids + r.token_ids  # ends with the pending token
            out.append(self._lookup(seq, k))
        return out, None

    def _lookup(self, seq: list[int], k: int) -> list[int]:
        for n in range(min(self.n, len(seq) - 1), 0, -1):
            tail = seq[-n:]
            for start in range(len(seq) - n - 1, -1, -1):  # latest earlier occurrence
                if seq[start : start + n] == tail:
                    follow = seq[start + n : start + n + k]
                    if follow:
                        return (follow + [follow[-1]] * k)[:k]
        return [seq[-1]] * k  # nothing to copy: repeat the last token (cheap, usually rejected)


class EarlyExitDraft:
    deterministic = False

    def __init__(self, engine, num_layers: int) -> None:
        self.num_layers = num_layers

    def propose(self, engine, busy: list[int], k: int) -> tuple[list[list[int]], list[torch.Tensor]]:
        n = busy[-1] + 1
        tokens = torch.zeros(n, 1, dtype=torch.long)
        start = torch.zeros(n, dtype=torch.long)
        for s in busy:
            tokens[s, 0] = engine.pending[s]
            start[s] = engine.lengths[s]
        drafts: list[list[int]] = [[] for _ in busy]
        qs: list[list[torch.Tensor]] = [[] for _ in busy]
        for _ in range(k):
            kv_len = int(start.max()) + 1
            logits = engine._forward_step(tokens, start, kv_len, num_layers=self.num_layers)[:, -1].float()
            for j, s in enumerate(busy):
                r = engine.slots[s]
                q = sampling_probs(logits[s], r.params)
                x = (
                    int(q.argmax())
                    if r.params.greedy
                    else int(torch.multinomial(q, 1, generator=r.generator))
                )
                drafts[j].append(x)
                qs[j].append(q)
                tokens[s, 0] = x
            start = start + 1
        return drafts, [torch.stack(q) for q in qs]


class SpeculativeDecoder:
    def __init__(self, engine, k: int, draft) -> None:
        self.engine, self.k, self.draft = engine, k, draft

    def step(self, busy: list[int]) -> None:
        import time

        e = self.engine
        k = min(self.k, e.max_seq - 1 - max(e.lengths[s] for s in busy))
        if k < 1:
            e._decode(busy)
            return
        t0 = time.perf_counter()
        drafts, qs = self.draft.propose(e, busy, k)
        n = busy[-1] + 1
        tokens = torch.zeros(n, k + 1, dtype=torch.long)
        start = torch.zeros(n, dtype=torch.long)
        for j, s in enumerate(busy):
            tokens[s, 0] = e.pending[s]
            tokens[s, 1:] = torch.tensor(drafts[j])
            start[s] = e.lengths[s]
        kv_len = max(e.lengths[s] for s in busy) + k + 1
        logits = e._forward_step(tokens, start, kv_len).float()  # (n, k + 1, V)
        emitted_total = 0
        for j, s in enumerate(busy):
            r = e.slots[s]
            p = torch.stack([sampling_probs(logits[s, t], r.params) for t in range(k + 1)])
            if qs is None:
                q = torch.zeros(k, p.shape[-1]).scatter_(1, torch.tensor(drafts[j])[:, None], 1.0)
            else:
                q = qs[j]
            out, accepted = verify(p, q, drafts[j], r.generator)
            e.stats.draft_proposed += k
            e.stats.draft_accepted += accepted
            # the cache holds pending + the accepted drafts; the last emitted token is the new pending one
            e.lengths[s] += 1 + accepted
            e.pending[s] = out[-1]
            lse = torch.logsumexp(logits[s], -1)
            for t, tid in enumerate(out):
                if r.finished:
                    break
                r._accept(tid, float(logits[s, t, tid] - lse[t]))
                emitted_total += 1
            if not r.finished and e.lengths[s] >= e.max_seq:
                r._finish("length")
        e.stats.decode_steps += 1
        e.stats.decode_tokens += emitted_total
        e.stats.decode_seconds += time.perf_counter() - t0
