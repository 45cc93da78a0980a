"""Decoding speed on CPU: lmfs generation with its KV cache vs without it, and vs Hugging Face ``transformers``
(``LlamaForCausalLM.generate``, greedy, its own KV cache) carrying the same weights.

A 5.8M-parameter Llama-shaped model (vocab 10,000, context 256, d_model 256, 4 layers, 8 heads), fp32, one thread
(``LMFS_THREADS``); a 64-token prompt, 32 new tokens, greedy. All three produce the same tokens (checked), so
they do the same work; ``tokens`` in extra_info is the number of new tokens per round.
"""

from __future__ import annotations

import pytest
import torch

from lmfs.generate.sampling import generate_tokens
from lmfs.nn import TransformerConfig, TransformerLM

PROMPT, NEW = 64, 32
CONFIG = dict(vocab_size=10_000, context_length=256, d_model=256, num_layers=4, num_heads=8, d_ff=672)


@pytest.fixture(scope="module")
def model() -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(**CONFIG)).eval()


@pytest.fixture(scope="module")
def prompt() -> list[int]:
    return torch.randint(
        0, CONFIG["vocab_size"], (PROMPT,), generator=torch.Generator().manual_seed(1)
    ).tolist()


def _hf(model: TransformerLM):
    transformers = pytest.importorskip("transformers")
    from lmfs.nn.llama_loader import hf_llama_config_kwargs, to_hf_llama_state_dict

    cfg = transformers.LlamaConfig(**hf_llama_config_kwargs(model.config))
    cfg._attn_implementation = "sdpa"
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.load_state_dict(to_hf_llama_state_dict(model.state_dict(), model.config), strict=True)
    return hf


@pytest.mark.parametrize("impl", ["lmfs", "lmfs-no-cache", "hf-transformers"])
def test_decode_greedy(
    benchmark, torch_threads: int, impl: str, model: TransformerLM, prompt: list[int]
) -> None:
    benchmark.group = "generate-decode-cpu-5.8M"
    benchmark.extra_info.update(impl=impl, tokens=NEW, prompt_tokens=PROMPT, threads=torch_threads)
    expected = list(generate_tokens(model, prompt, NEW, context_length=256, temperature=0, kv_cache=False))
    if impl == "hf-transformers":
        hf = _hf(model)
        ids = torch.tensor([prompt])

        @torch.no_grad()
        def run() -> list[int]:
            out = hf.generate(
                ids,
                max_new_tokens=NEW,
                min_new_tokens=NEW,
                do_sample=False,
                pad_token_id=0,
                eos_token_id=None,
            )
            return out[0, PROMPT:].tolist()
    else:
        kv = impl == "lmfs"

        def run() -> list[int]:
            return list(generate_tokens(model, prompt, NEW, context_length=256, temperature=0, kv_cache=kv))

    got = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    assert got == expected
