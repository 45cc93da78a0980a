"""Generation: temperature / top-p sampling, KV-cached and speculative decoding, streaming decode, a run's
tokenizer. (The model of a trained run comes from :func:`lmfs.train.load_model`.)"""

from lmfs.generate.load import eot_id, load_run_tokenizer
from lmfs.generate.sampling import generate_tokens, next_token_distribution, sample_next_token, top_p_filter
from lmfs.generate.speculative import SpeculativeStats, speculative_generate
from lmfs.generate.stream import TextStreamer
from lmfs.generate.text import generate_text

__all__ = [
    "SpeculativeStats",
    "TextStreamer",
    "eot_id",
    "generate_text",
    "generate_tokens",
    "load_run_tokenizer",
    "next_token_distribution",
    "sample_next_token",
    "speculative_generate",
    "top_p_filter",
]
