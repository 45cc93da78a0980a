"""The batched decoding engine: a preallocated static KV cache, continuous batching, per-request sampling.

Layout. The cache is one pair of tensors per layer, ``(max_batch, num_kv_heads, max_seq, d_head)``, allocated
once. A request owns one *slot* (a batch row) from its prefill to its end; ``length[slot]`` positions of the row
are valid, the rest is stale data of earlier requests or padding and is never attended to (every attention
masks keys ``j > position``). Finished requests free their slot after any step, and waiting requests are
prefilled into free slots before the next decode step — the batch never restarts.

A step. Prefill runs the new prompts (right-padded to one length) through the model, writes their keys/values
into their slots and samples each first token from the logits at the prompt's last position only. A decode step
feeds every slot's newest token at position ``length[slot]`` (a per-row position: rows are at different
lengths), writes its K/V at that position and attends over the cache's first ``kv_len`` positions with a per-row
mask. Grouped-query heads are never repeated: the query heads of one K/V head attend as a group of shape
(B, Hkv, G, T, D) against (B, Hkv, 1, S, D).

Compiled mode (``compile=True``) runs the decode step through ``torch.compile`` at fixed shapes: all
``max_batch`` rows every step (free rows compute on slot garbage and are ignored) and ``kv_len`` rounded up to a
power of two (≥ 64), so it compiles once per bucket. Eager mode runs only the rows up to the highest busy slot
and exactly the keys needed.

The layer math is the model's own: its RMSNorms, FFNs, projections and RoPE tables, and lmfs's from-scratch
attention (``lmfs.nn.functional``); only the cache addressing is the engine's. So greedy output equals
:func:`lmfs.generate.generate_tokens` (tested), up to floating-point reordering in batched matmuls.
"""

from __future__ import annotations

import collections
import itertools
import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lmfs.generate.stream import TextStreamer
from lmfs.infer.packed import PackedWeights, packing_available
from lmfs.infer.sampling import SamplingParams, sample_row
from lmfs.nn.ffn import SiLUFFN, SwiGLU
from lmfs.nn.functional import causal_attention, silu

FINISH_REASONS = ("stop", "length", "cancelled")


@dataclass
class Completion:
    """One finished request. ``token_ids``: the generated ids (a stop token id is not included; the tokens of
    a stop string are). ``text``: their text, cut before a stop string. ``finish_reason``: "stop" (stop
    string / token), "length" (max_tokens or the cache's max_seq), "cancelled". ``token_logprobs``: log p of
    each generated token under the model (temperature 1, no filtering)."""

    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str
    token_logprobs: list[float] = field(default_factory=list)
    request_id: int = -1


@dataclass
class EngineStats:
    """Counters since the engine was made (or :meth:`Engine.reset_stats`)."""

    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_steps: int = 0
    decode_tokens: int = 0
    decode_seconds: float = 0.0
    draft_proposed: int = 0
    draft_accepted: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.draft_accepted / self.draft_proposed if self.draft_proposed else 0.0


Callback = Callable[["Request", str, bool], None]


class Request:
    """A request's state inside the engine. ``on_event(request, new_text, finished)`` is called from the thread
    that runs the engine after each token that completes text (and once at the end)."""

    _ids = itertools.count()

    def __init__(self, prompt_ids: list[int], params: SamplingParams, tokenizer: Any, on_event=None) -> None:
        self.id = next(self._ids)
        self.prompt_ids = prompt_ids
        self.params = params
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        self.generator = torch.Generator().manual_seed(seed)
        self.token_ids: list[int] = []
        self.token_logprobs: list[float] = []
        self.text = ""
        self.emitted = 0  # characters of text handed to on_event
        self.finish_reason: str | None = None
        self.cancelled = False
        self.slot: int | None = None
        self.on_event: Callback | None = on_event
        self.done = threading.Event()
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None
        self._tokenizer = tokenizer
        self._streamer = TextStreamer(tokenizer) if tokenizer is not None else None
        self._stop_max = max((len(s) for s in params.stop), default=0)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def completion(self) -> Completion:
        return Completion(
            list(self.prompt_ids),
            list(self.token_ids),
            self.text,
            self.finish_reason or "",
            list(self.token_logprobs),
            self.id,
        )

    # --- token bookkeeping (engine thread) ---
    def _accept(self, token: int, logprob: float) -> None:
        """Record one sampled token; may finish the request."""
        if self.finished:
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        if token in self.params.stop_token_ids:
            self._finish("stop")
            return
        self.token_ids.append(token)
        self.token_logprobs.append(logprob)
        if self._streamer is not None:
            self.text += self._streamer.push(token)
            if self._check_stop():
                return
        if len(self.token_ids) >= self.params.max_tokens:
            self._finish("length")
        else:
            self._emit(final=False)

    def _check_stop(self) -> bool:
        if not self._stop_max:
            return False
        window = self.emitted  # text before what was handed out can hold no stop string (checked earlier)
        start = max(0, window - self._stop_max)
        hits = [i for s in self.params.stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self._finish("stop", flush=False)
            return True
        return False

    def _finish(self, reason: str, flush: bool = True) -> None:
        if self.finished:
            return
        if flush and self._streamer is not None:
            self.text += self._streamer.flush()
            if reason != "stop" and self._check_stop():
                return
        self.finish_reason = reason
        self._emit(final=True)
        self.done.set()

    def _emit(self, final: bool) -> None:
        end = len(self.text)
        if not final and self._stop_max:  # hold back a tail that may be the start of a stop string
            for k in range(min(self._stop_max - 1, end - self.emitted), 0, -1):
                tail = self.text[end - k :]
                if any(s.startswith(tail) for s in self.params.stop):
                    end -= k
                    break
        piece = self.text[self.emitted : end]
        self.emitted = max(self.emitted, end)
        if self.on_event is not None and (piece or final):
            try:
                self.on_event(self, piece, final)
            except Exception:  # a listener that fails (e.g. its event loop closed) must not stop the engine
                self.on_event = None
                self.cancelled = True


class Engine:
    """Batched decoding for an lmfs ``TransformerLM`` (any config, incl. SmolLM2 loaded into lmfs.nn).

    ``tokenizer``: anything with ``encode(str) -> list[int]`` and ``decode(ids) -> str`` (needed for text
    prompts, ``Completion.text`` and stop strings; None works with token-id prompts only). ``max_batch``: slots
    (requests decoded at once); ``max_seq``: cache positions per slot (prompt + generated ≤ max_seq + 1;
    at most the model's context length). ``compile``: torch.compile the decode step (see the module doc).
    ``draft``: speculative decoding (see :mod:`lmfs.infer.speculative`), e.g. ``"layers:8"`` or ``"ngram"``.
    ``pack_weights``: multiply by oneDNN-packed copies of the weights (:mod:`lmfs.infer.packed`; float32 on
    the CPU only, one extra copy of the weights in memory); None packs whenever that is possible.

    Use :meth:`generate` for a list of prompts; :meth:`submit` + :meth:`step` (or :meth:`start_loop`) for a
    stream of requests.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any = None,
        max_batch: int = 8,
        max_seq: int = 512,
        *,
        compile: bool = False,
        draft: Any = None,
        draft_k: int = 4,
        prefill_tokens: int = 4096,
        pack_weights: bool | None = None,
    ) -> None:
        cfg = getattr(model, "config", None)
        if cfg is None or not hasattr(model, "layers"):
            raise TypeError(f"Engine needs an lmfs TransformerLM, got {type(model).__name__}")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        if not isinstance(max_seq, int) or not 1 <= max_seq <= cfg.context_length:
            raise ValueError(f"max_seq must be in [1, context_length={cfg.context_length}], got {max_seq!r}")
        self.model = model.eval()
        self.config = cfg
        self.tokenizer = tokenizer
        self.max_batch, self.max_seq = max_batch, max_seq
        self.prefill_tokens = max(prefill_tokens, max_seq)
        weight = model.token_embeddings.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.n_heads, self.n_kv, self.d_head = cfg.num_heads, cfg.kv_heads, cfg.d_head
        self.group = self.n_heads // self.n_kv
        shape = (max_batch, self.n_kv, max_seq, self.d_head)
        self.k_cache = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in model.layers]
        self.v_cache = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in model.layers]
        self.lengths = [0] * max_batch  # valid cache positions per slot
        self.pending = [0] * max_batch  # the newest sampled token of each busy slot (not yet in the cache)
        self.slots: list[Request | None] = [None] * max_batch
        self.stats = EngineStats()
        self._waiting: collections.deque[Request] = collections.deque()
        self._lock = threading.Lock()  # guards _waiting
        self._step_lock = threading.Lock()  # one step at a time
        self._wake = threading.Condition(self._lock)
        self._loop: threading.Thread | None = None
        self._stop_loop = False
        # oneDNN-packed projection weights (float32 on the CPU; see lmfs.infer.packed): None = when available
        can_pack = packing_available(self.device, self.dtype)
        if pack_weights and not can_pack:
            raise ValueError(
                f"pack_weights=True needs float32 weights on the CPU and a torch with oneDNN "
                f"(got {self.dtype} on {self.device})"
            )
        if pack_weights is None:  # torch.compile packs weights itself (and would not trace the version checks)
            pack_weights = can_pack and not compile
        self.packed = PackedWeights(hint=16) if pack_weights else None
        self.compiled = compile
        self._step_fn = self._forward_step
        if compile:
            self._step_fn = torch.compile(self._forward_step, fullgraph=True, dynamic=False)
        self.draft = None
        if draft is not None:
            from lmfs.infer.speculative import make_draft

            self.draft = make_draft(draft, self, draft_k)

    # ------------------------------------------------------------------ public API
    def encode_prompt(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("a text prompt needs a tokenizer: pass one to Engine(model, tokenizer, ...)")
            ids = list(self.tokenizer.encode(prompt))
        else:
            ids = [int(t) for t in prompt]
        if not ids:
            raise ValueError("prompt is empty: give at least one token")
        if len(ids) > self.max_seq:
            raise ValueError(f"prompt has {len(ids)} tokens but the engine's max_seq is {self.max_seq}")
        bad = [t for t in ids if not 0 <= t < self.config.vocab_size]
        if bad:
            raise ValueError(
                f"prompt token id {bad[0]} is outside the model's vocabulary of {self.config.vocab_size}"
            )
        return ids

    def submit(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams | None = None,
        on_event: Callback | None = None,
    ) -> Request:
        """Queue one request (thread-safe); it joins the batch at the next step with a free slot."""
        params = params or SamplingParams()
        if params.stop and self.tokenizer is None:
            raise ValueError("stop strings need a tokenizer: pass one to Engine(model, tokenizer, ...)")
        req = Request(self.encode_prompt(prompt), params, self.tokenizer, on_event)
        with self._wake:
            self._waiting.append(req)
            self._wake.notify()
        return req

    def cancel(self, request: Request) -> None:
        """Stop a request (thread-safe): its slot is freed at the next step, finish_reason "cancelled"."""
        request.cancelled = True
        with self._wake:
            self._wake.notify()

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return sum(r is not None for r in self.slots)

    def has_work(self) -> bool:
        return bool(self._waiting) or any(r is not None for r in self.slots)

    def generate(
        self,
        prompts: Sequence[str] | Sequence[Sequence[int]],
        params: SamplingParams | Sequence[SamplingParams] | None = None,
        *,
        progress: bool = False,
    ) -> list[Completion]:
        """Complete every prompt (continuous batching over ``max_batch`` slots); results in prompt order."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of prompts (strings or token-id lists), not one string")
        prompts = list(prompts)
        if params is None or isinstance(params, SamplingParams):
            per = [params or SamplingParams()] * len(prompts)
        else:
            per = list(params)
            if len(per) != len(prompts):
                raise ValueError(f"{len(prompts)} prompts but {len(per)} SamplingParams")
        reqs = [self.submit(p, sp) for p, sp in zip(prompts, per, strict=True)]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(reqs), desc="generate", unit="req")
        done = 0
        while True:
            if self._loop is not None:
                reqs[done].done.wait()
            elif not reqs[done].finished:
                self.step()
            while done < len(reqs) and reqs[done].finished:
                done += 1
                if bar is not None:
                    bar.update(1)
            if done == len(reqs):
                break
        if bar is not None:
            bar.close()
        return [r.completion() for r in reqs]

    def reset_stats(self) -> None:
        self.stats = EngineStats()

    # ------------------------------------------------------------------ background loop (for servers)
    def start_loop(self) -> None:
        """Run :meth:`step` in a daemon thread whenever there is work; :meth:`submit` from any thread."""
        if self._loop is not None:
            return
        self._stop_loop = False
        self._loop = threading.Thread(target=self._run_loop, name="lmfs-engine", daemon=True)
        self._loop.start()

    def stop_loop(self) -> None:
        if self._loop is None:
            return
        with self._wake:
            self._stop_loop = True
            self._wake.notify()
        self._loop.join()
        self._loop = None

    def _run_loop(self) -> None:
        while True:
            with self._wake:
                while not self._stop_loop and not self.has_work():
                    self._wake.wait(timeout=1.0)
                if self._stop_loop:
                    return
            self.step()

    # ------------------------------------------------------------------ one step
    @torch.no_grad()
    def step(self) -> list[Request]:
        """Admit waiting requests into free slots (prefill), then one decode step for every busy slot.
        Returns the requests that finished in this step."""
        with self._step_lock:
            finished: list[Request] = []
            self._reap(finished)
            self._admit(finished)
            busy = [s for s, r in enumerate(self.slots) if r is not None and not r.finished]
            if busy:
                if self.draft is not None:
                    self.draft.step(busy)
                else:
                    self._decode(busy)
            self._reap(finished)
            return finished

    def _reap(self, finished: list[Request]) -> None:
        for s, r in enumerate(self.slots):
            if r is None:
                continue
            if r.cancelled and not r.finished:
                r._finish("cancelled")
            if r.finished:
                self.slots[s] = None
                r.slot = None
                finished.append(r)

    def _admit(self, finished: list[Request]) -> None:
        free = [s for s, r in enumerate(self.slots) if r is None]
        batch: list[Request] = []
        with self._lock:
            while self._waiting and len(batch) < len(free):
                r = self._waiting.popleft()
                if r.cancelled:
                    r._finish("cancelled")
                    finished.append(r)
                elif r.params.max_tokens == 0:
                    r._finish("length")
                    finished.append(r)
                else:
                    batch.append(r)
        # prefill in chunks of at most prefill_tokens padded tokens
        chunk: list[Request] = []
        for r in batch:
            longest = max([len(c.prompt_ids) for c in chunk] + [len(r.prompt_ids)])
            if chunk and longest * (len(chunk) + 1) > self.prefill_tokens:
                self._prefill(chunk, free[: len(chunk)])
                free = free[len(chunk) :]
                chunk = []
            chunk.append(r)
        if chunk:
            self._prefill(chunk, free[: len(chunk)])

    def _prefill(self, reqs: list[Request], slots: list[int]) -> None:
        t0 = time.perf_counter()
        lens = [len(r.prompt_ids) for r in reqs]
        T = max(lens)
        tokens = torch.zeros(len(reqs), T, dtype=torch.long)
        for i, r in enumerate(reqs):
            tokens[i, : lens[i]] = torch.tensor(r.prompt_ids)
        tokens = tokens.to(self.device)
        slot_t = torch.tensor(slots, device=self.device)
        last = torch.tensor([n - 1 for n in lens], device=self.device)
        logits = self._forward_prefill(tokens, slot_t, last)  # (B, V)
        self.stats.prefill_tokens += sum(lens)
        self.stats.prefill_seconds += time.perf_counter() - t0
        for i, (r, s) in enumerate(zip(reqs, slots, strict=True)):
            self.slots[s], r.slot = r, s
            self.lengths[s] = lens[i]
        self._sample_rows(slots, logits.float().cpu(), list(range(len(slots))))

    def _sample_rows(self, slots: list[int], logits: Tensor, rows: list[int]) -> None:
        """Sample the next token of each slot ``slots[i]`` from ``logits[rows[i]]`` ((n, V), float32 on the
        CPU): greedy rows by one batched argmax, the others with their own filters and generator; the log-probs
        under the raw model by one batched logsumexp."""
        reqs = [self.slots[s] for s in slots]
        identity = rows == list(range(logits.shape[0]))
        picked = logits if identity else logits.index_select(0, torch.tensor(rows))
        argmax = picked.argmax(-1).tolist() if any(r.params.greedy for r in reqs) else None
        tokens = [
            argmax[i] if r.params.greedy else sample_row(picked[i], r.params, r.generator)[0]
            for i, r in enumerate(reqs)
        ]
        chosen = picked.gather(1, torch.tensor(tokens)[:, None])[:, 0]
        logprobs = (chosen - torch.logsumexp(picked, -1)).tolist()
        for s, r, token, logprob in zip(slots, reqs, tokens, logprobs, strict=True):
            self.pending[s] = token
            r._accept(token, logprob)
            if not r.finished and self.lengths[s] >= self.max_seq:
                r._finish("length")  # no room to feed this token

    def _decode(self, busy: list[int]) -> None:
        t0 = time.perf_counter()
        n = self.max_batch if self.compiled else busy[-1] + 1
        # free rows below the highest busy slot feed token 0 at position 0 (their output is ignored)
        tokens, start = [0] * n, [0] * n
        for s in busy:
            tokens[s], start[s] = self.pending[s], self.lengths[s]
        kv_len = self._kv_len(max(self.lengths[s] for s in busy) + 1)
        tokens_t = torch.tensor(tokens, dtype=torch.long).view(n, 1)
        start_t = torch.tensor(start, dtype=torch.long)
        logits = self._step_fn(tokens_t.to(self.device), start_t.to(self.device), kv_len)[:, -1]  # (n, V)
        logits = logits.float().cpu()
        self.stats.decode_steps += 1
        self.stats.decode_tokens += len(busy)
        for s in busy:
            self.lengths[s] += 1
        self._sample_rows(busy, logits, busy)
        self.stats.decode_seconds += time.perf_counter() - t0

    def _kv_len(self, need: int) -> int:
        if not self.compiled:
            return need
        return min(self.max_seq, max(64, 1 << math.ceil(math.log2(need))))

    # ------------------------------------------------------------------ the model math
    def _block(self, i: int, x: Tensor, attend) -> Tensor:
        layer = self.model.layers[i]
        if self.config.norm == "post":
            x = layer.ln1(x + attend(layer.attn, x, i))
            return layer.ln2(x + self._ffn(layer.ffn, x))
        x = x + attend(layer.attn, layer.ln1(x), i)
        return x + self._ffn(layer.ffn, layer.ln2(x))

    def _linear(self, lin, x: Tensor) -> Tensor:
        if self.packed is not None:
            return self.packed.linear(x, lin.weight)
        return lin(x)

    def _ffn(self, ffn, x: Tensor) -> Tensor:
        """The model's FFN; with packed weights SwiGLU's W1 and W3 run as one GEMM (same products)."""
        if self.packed is None:
            return ffn(x)
        if type(ffn) is SwiGLU:
            gate, up = self.packed.linear(x, ffn.w1.weight, ffn.w3.weight).chunk(2, dim=-1)
            return self.packed.linear(silu(gate) * up, ffn.w2.weight)
        if type(ffn) is SiLUFFN:
            return self.packed.linear(silu(self.packed.linear(x, ffn.w1.weight)), ffn.w2.weight)
        return ffn(x)

    @staticmethod
    def _rope_tables(rope, pos: Tensor, tables: dict) -> Tensor:
        """The model's RoPE tables at positions ``pos`` (B or 1, T) as one complex rotation ``cos + i·sin``
        of shape (B or 1, T, 1, D/2), looked up once per forward (every layer shares it)."""
        key = id(rope)
        if key not in tables:
            tables[key] = torch.complex(rope.cos[pos], rope.sin[pos])[:, :, None, :]
        return tables[key]

    @staticmethod
    def _rotate(x: Tensor, rotation: Tensor) -> Tensor:
        """RoPE on interleaved pairs, as :class:`lmfs.nn.rope.RotaryEmbedding` (float32): the pair
        (x[2k], x[2k+1]) read as the complex number x[2k] + i·x[2k+1] times cos + i·sin is
        (x[2k]·cos − x[2k+1]·sin) + i·(x[2k]·sin + x[2k+1]·cos), the model's two rotated components."""
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
        return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)

    def _qkv(self, attn, x: Tensor, pos: Tensor, tables: dict) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, T, d) -> q (B, H, T, D), k, v (B, Hkv, T, D) with RoPE at positions ``pos`` ((B or 1, T));
        the query and key heads are rotated together."""
        B, T, _ = x.shape
        H, Hkv = self.n_heads, self.n_kv
        qkv = self._linear(attn.qkv_proj, x).view(B, T, H + 2 * Hkv, self.d_head)
        if attn.rope is not None:
            qk = self._rotate(qkv[:, :, : H + Hkv], self._rope_tables(attn.rope, pos, tables))
            q, k = qk[:, :, :H], qk[:, :, H:]
        else:
            q, k = qkv[:, :, :H], qkv[:, :, H : H + Hkv]
        v = qkv[:, :, H + Hkv :]
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def _forward_prefill(self, tokens: Tensor, slots: Tensor, last: Tensor) -> Tensor:
        """Right-padded prompts (B, T) into ``slots``: write their K/V at positions 0..T-1, return the logits
        (B, V) at position ``last[b]`` of each row (padding after a prompt is never attended to by it)."""
        B, T = tokens.shape
        pos = torch.arange(T, device=tokens.device)[None, :]
        tables: dict = {}

        def attend(attn, x: Tensor, layer_index: int) -> Tensor:
            q, k, v = self._qkv(attn, x, pos, tables)
            self.k_cache[layer_index][slots, :, :T] = k
            self.v_cache[layer_index][slots, :, :T] = v
            out = causal_attention(q, k, v, is_causal=True)  # (B, H, T, D); grouped K/V broadcast
            return self._linear(
                attn.output_proj, out.transpose(1, 2).reshape(B, T, self.n_heads * self.d_head)
            )

        x = self.model.token_embeddings(tokens)
        for i in range(len(self.model.layers)):
            x = self._block(i, x, attend)
        x = x[torch.arange(B, device=x.device), last]  # (B, d)
        return self._linear(self.model.lm_head, self.model.ln_final(x))

    @staticmethod
    def _key_mask(pos: Tensor, kv_len: int) -> Tensor:
        """(n, T) query positions -> bool (n, T, kv_len): key j is visible to a query at position p iff j ≤ p."""
        keys = torch.arange(kv_len, device=pos.device)
        return keys[None, None, :] <= pos[:, :, None]

    @staticmethod
    def _cached_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
        """``softmax(q kᵀ · scale + bias) v`` for q (N, M, D) against k, v (N, S, D): the math of
        :func:`lmfs.nn.functional.scaled_dot_product_attention` (max-shifted softmax), with the mask as an
        additive 0 / −inf ``bias`` (N, M, S) built once per step instead of once per layer."""
        scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=scale)
        scores.sub_(scores.amax(-1, keepdim=True)).exp_()
        scores.div_(scores.sum(-1, keepdim=True))
        return torch.bmm(scores, v)

    def _forward_step(
        self, tokens: Tensor, start: Tensor, kv_len: int, num_layers: int | None = None
    ) -> Tensor:
        """Rows 0..n-1 of the cache: feed tokens (n, T) at positions start[b] + t, write their K/V there, attend
        over cache positions < kv_len with keys j ≤ position. Returns logits (n, T, V). ``num_layers``: run only
        the first layers, then the final norm and LM head (the early-exit draft of self-speculation)."""
        n, T = tokens.shape
        G, Hkv = self.group, self.n_kv
        pos = start[:, None] + torch.arange(T, device=tokens.device)  # (n, T)
        write = pos.clamp(max=self.max_seq - 1)
        rows = torch.arange(n, device=tokens.device)[:, None]
        mask = self._key_mask(pos, kv_len)  # (n, T, S) -> (n·Hkv, G·T, S), rows in (head, position) order
        mask = mask[:, None, None].expand(n, Hkv, G, T, kv_len).reshape(n * Hkv, G * T, kv_len)
        bias = torch.zeros(mask.shape, device=tokens.device, dtype=self.dtype).masked_fill_(~mask, -math.inf)
        scale = 1.0 / math.sqrt(self.d_head)
        tables: dict = {}

        def attend(attn, x: Tensor, layer_index: int) -> Tensor:
            q, k, v = self._qkv(attn, x, pos, tables)
            kc, vc = self.k_cache[layer_index], self.v_cache[layer_index]
            kc[rows, :, write] = k.transpose(1, 2)  # (n, T, Hkv, D) at (row, :, position)
            vc[rows, :, write] = v.transpose(1, 2)
            # the G query heads of a K/V head (and their T positions) as one (G·T)-row matrix: a plain batched
            # matmul against that head's keys, no repeated or broadcast-expanded K/V
            qg = q.reshape(n * Hkv, G * T, self.d_head)
            keys, values = kc[:n, :, :kv_len].flatten(0, 1), vc[:n, :, :kv_len].flatten(0, 1)  # views
            out = self._cached_attention(qg, keys, values, bias, scale)
            out = out.view(n, self.n_heads, T, self.d_head).transpose(1, 2).reshape(n, T, -1)
            return self._linear(attn.output_proj, out)

        x = self.model.token_embeddings(tokens)
        for i in range(num_layers or len(self.model.layers)):
            x = self._block(i, x, attend)
        return self._linear(self.model.lm_head, self.model.ln_final(x))
