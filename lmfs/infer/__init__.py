"""Batched inference: the decoding engine (static KV cache, continuous batching, per-request sampling,
compiled decode step, speculative decoding) and the OpenAI-compatible server (``lmfs serve``)."""

from lmfs.infer.engine import Completion, Engine, EngineStats, Request
from lmfs.infer.sampling import SamplingParams

__all__ = ["Completion", "Engine", "EngineStats", "Request", "SamplingParams"]
