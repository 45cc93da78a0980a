"""Speculative decoding in the engine on SmolLM2-135M-Instruct, batch 1, greedy (so every impl emits the target's
exact tokens; checked): plain decoding vs prompt lookup (``ngram``) and self-speculation from the target's first
N layers (``layers:N``), on two chat prompts — one that asks to repeat a passage (the answer copies its context)
and an open question. extra_info: ``acceptance_rate`` (accepted / proposed drafts) and ``tokens_per_pass``
(tokens emitted per target forward). ``tokens`` = new tokens per round.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

NEW, K = 48, 4
PASSAGE = (
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step. "
    "All that glitters is not gold. Actions speak louder than words."
)
PROMPTS = {
    "repeat": f"Repeat the following text exactly, word for word:\n\n{PASSAGE}",
    "open": "Write a short story about a robot who learns to paint.",
}


@pytest.fixture(scope="module")
def smol():
    pytest.importorskip("gguf")
    from lmfs.infer.load import load_smollm2

    try:
        return load_smollm2(context_length=512)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


IMPLS = ["lmfs", "lmfs-spec-ngram", "lmfs-spec-layers:10", "lmfs-spec-layers:20"]


@pytest.mark.parametrize("prompt", list(PROMPTS))
@pytest.mark.parametrize("impl", IMPLS)
def test_speculative(benchmark, torch_threads, smol, impl, prompt):
    from lmfs.infer import Engine, SamplingParams
    from lmfs.infer.server import ChatTemplate

    text = ChatTemplate("chatml", smol.default_system).render([{"role": "user", "content": PROMPTS[prompt]}])
    ids = smol.tokenizer.encode(text)
    draft = impl.removeprefix("lmfs-spec-") if impl != "lmfs" else None
    engine = Engine(smol.model, smol.tokenizer, max_batch=1, max_seq=len(ids) + NEW, draft=draft, draft_k=K)
    params = SamplingParams(temperature=0, max_tokens=NEW)  # no stop: every round emits NEW tokens
    plain = Engine(smol.model, smol.tokenizer, max_batch=1, max_seq=len(ids) + NEW).generate([ids], params)[0]
    benchmark.group = f"infer-speculative-smollm2-{prompt}"
    benchmark.extra_info.update(
        impl=impl, tokens=NEW, draft_k=K, threads=torch_threads, load=open("/proc/loadavg").read().split()[0]
    )

    def run():
        engine.reset_stats()
        return engine.generate([ids], params)[0]

    out = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=1)
    # greedy speculation emits the target's tokens; fp32 (k+1)-position passes may round a near-tie differently
    same = next(
        (i for i, (a, b) in enumerate(zip(out.token_ids, plain.token_ids, strict=True)) if a != b), NEW
    )
    assert same >= 8
    st = engine.stats
    benchmark.extra_info.update(
        acceptance_rate=st.acceptance_rate,
        tokens_equal_to_plain=same,
        tokens_per_pass=st.decode_tokens / max(st.decode_steps, 1),
    )
