"""Generation: temperature / top-p sampling, streaming decode, loading a trained run."""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve on first use, so `import lmfs.<unit>.cli` (and `lmfs --help`) does not pull in torch.
_EXPORTS = {
    "TextStreamer": "lmfs.generate.stream",
    "find_checkpoint": "lmfs.generate.load",
    "generate_text": "lmfs.generate.text",
    "generate_tokens": "lmfs.generate.sampling",
    "load_model": "lmfs.generate.load",
    "load_run_tokenizer": "lmfs.generate.load",
    "next_token_distribution": "lmfs.generate.sampling",
    "sample_next_token": "lmfs.generate.sampling",
    "top_p_filter": "lmfs.generate.sampling",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
