"""Generation: temperature / top-p sampling, KV-cached and speculative decoding, streaming decode, loading a
trained run."""

from lmfs.generate.load import find_checkpoint, load_model, load_run_tokenizer
from lmfs.generate.sampling import generate_tokens, next_token_distribution, sample_next_token, top_p_filter
from lmfs.generate.speculative import SpeculativeStats, speculative_generate
from lmfs.generate.stream import TextStreamer
from lmfs.generate.text import generate_text

__all__ = [
    "SpeculativeStats",
    "TextStreamer",
    "find_checkpoint",
    "generate_text",
    "generate_tokens",
    "load_model",
    "load_run_tokenizer",
    "next_token_distribution",
    "sample_next_token",
    "speculative_generate",
    "top_p_filter",
]
