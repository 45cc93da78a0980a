"""Generation: temperature / top-p sampling, KV-cached and speculative decoding, streaming decode, loading a
trained run."""

from __future__ import annotations

from lmfs._lazy import lazy_exports

_EXPORTS = {
    "SpeculativeStats": "lmfs.generate.speculative",
    "TextStreamer": "lmfs.generate.stream",
    "find_checkpoint": "lmfs.generate.load",
    "generate_text": "lmfs.generate.text",
    "generate_tokens": "lmfs.generate.sampling",
    "load_model": "lmfs.generate.load",
    "load_run_tokenizer": "lmfs.generate.load",
    "next_token_distribution": "lmfs.generate.sampling",
    "sample_next_token": "lmfs.generate.sampling",
    "speculative_generate": "lmfs.generate.speculative",
    "top_p_filter": "lmfs.generate.sampling",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
