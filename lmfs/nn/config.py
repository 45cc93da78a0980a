"""The Transformer LM's hyperparameters: the one definition of the model's fields, with validation that says
what to fix.

This module needs no torch: the run config (:class:`lmfs.train.TrainConfig` nests a TransformerConfig), the
scaling accounting (:mod:`lmfs.scaling.accounting` takes one), the presets and the command-line flags
(generated from :func:`dataclasses.fields`) all read the fields from here. Adding a model option means a field
here, its use in the model, and its cost in the accounting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

NORMS = ("pre", "post", "none")
POSITIONS = ("rope", "none")
FFNS = ("swiglu", "silu")

#: the shape fields that must be positive integers (they have no default)
_POSITIVE = ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff")


def swiglu_hidden_dim(d_model: int, multiple_of: int = 64) -> int:
    """d_ff ≈ 8/3 · d_model rounded to the nearest multiple of ``multiple_of`` (at least one multiple).

    e.g. 512 -> 1344, 768 -> 2048.
    """
    return max(multiple_of, multiple_of * round(8 * d_model / 3 / multiple_of))


def default_d_ff(d_model: int, ffn: str = "swiglu", multiple_of: int = 64) -> int:
    """The conventional hidden size: ≈ 8/3·d_model (multiple of 64) for SwiGLU, 4·d_model for the SiLU FFN."""
    return swiglu_hidden_dim(d_model, multiple_of) if ffn == "swiglu" else 4 * d_model


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class TransformerConfig:
    """Shape and ablation switches of :class:`~lmfs.nn.TransformerLM`.

    ``norm``: "pre" (course default, final RMSNorm), "post" (normalize after each residual add; no final
    norm) or "none". ``position``: "rope" or "none" (NoPE). ``ffn``: "swiglu" or "silu" (ungated).
    ``num_kv_heads`` < ``num_heads`` gives grouped-query attention. ``tie_embeddings`` shares the token
    embedding with the output projection. ``activation_checkpointing`` = k > 0 recomputes every k-th block
    (blocks 0, k, 2k, ...) in backward instead of keeping its activations; it changes memory and time, not
    the model.
    """

    vocab_size: int = field(metadata=_help("token vocabulary size"))
    context_length: int = field(metadata=_help("longest input, in tokens"))
    d_model: int = field(metadata=_help("residual stream width"))
    num_layers: int = field(metadata=_help("Transformer blocks"))
    num_heads: int = field(metadata=_help("attention (query) heads; must divide d_model"))
    d_ff: int = field(metadata=_help("FFN hidden size (SwiGLU: ≈ 8/3·d_model)"))
    rope_theta: float = field(default=10000.0, metadata=_help("RoPE base"))
    num_kv_heads: int | None = field(
        default=None, metadata=_help("key/value heads for grouped-query attention (none: num_heads)")
    )
    tie_embeddings: bool = field(default=False, metadata=_help("share the token embedding with lm_head"))
    norm: Literal["pre", "post", "none"] = field(default="pre", metadata=_help("RMSNorm placement"))
    position: Literal["rope", "none"] = field(default="rope", metadata=_help("position encoding"))
    ffn: Literal["swiglu", "silu"] = field(default="swiglu", metadata=_help("feed-forward network"))
    eps: float = field(default=1e-5, metadata=_help("RMSNorm epsilon"))
    activation_checkpointing: int = field(
        default=0,
        metadata=_help("recompute blocks in backward instead of storing their activations: 0 none, "
                       "1 every block, k every k-th block (training only)"),
    )

    def __post_init__(self) -> None:
        self.validate()

    @property
    def d_head(self) -> int:
        return self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    def problems(self) -> list[str]:
        """Every inconsistency of this config, each naming the field and the fix (empty when valid)."""
        return config_problems(vars(self))

    def validate(self) -> None:
        """Raise ValueError naming the field and the fix when the config is inconsistent."""
        problems = self.problems()
        if problems:
            raise ValueError("TransformerConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TransformerConfig:
        """Build from a dict, rejecting unknown keys by name (a typo in a config file fails loudly)."""
        known = field_names()
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TransformerConfig: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)


def field_names() -> frozenset[str]:
    """The names of :class:`TransformerConfig`'s fields."""
    return frozenset(f.name for f in dataclasses.fields(TransformerConfig))


def config_problems(values: Mapping[str, Any]) -> list[str]:
    """What is wrong with these TransformerConfig field values (only the fields given are checked, so a
    partial shape such as a preset without its context length can be checked too)."""
    out: list[str] = []
    bad: set[str] = set()
    for name in _POSITIVE:
        if name not in values:
            continue
        value = values[name]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            out.append(f"{name} must be a positive integer, got {value!r}")
            bad.add(name)
    d_model, heads = values.get("d_model"), values.get("num_heads")
    shape_ok = d_model is not None and heads is not None and not bad & {"d_model", "num_heads"}
    if shape_ok and d_model % heads:
        out.append(f"d_model ({d_model}) must be divisible by num_heads ({heads})")
    kv = values.get("num_kv_heads")
    if kv is not None:
        if not isinstance(kv, int) or isinstance(kv, bool) or kv <= 0:
            out.append(f"num_kv_heads ({kv!r}) must be a positive integer or None")
        elif heads is not None and "num_heads" not in bad and heads % kv:
            out.append(f"num_kv_heads ({kv}) must be positive and divide num_heads ({heads})")
    if (
        shape_ok
        and not d_model % heads
        and values.get("position", "rope") == "rope"
        and (d_model // heads) % 2
    ):
        out.append(f"RoPE needs an even head dim, got d_model/num_heads = {d_model // heads}")
    for name, allowed in (("norm", NORMS), ("position", POSITIONS), ("ffn", FFNS)):
        if name in values and values[name] not in allowed:
            out.append(f"{name} must be one of {allowed}, got {values[name]!r}")
    if "activation_checkpointing" in values:
        value = values["activation_checkpointing"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            out.append(
                f"activation_checkpointing must be an integer >= 0 (0 none, 1 every block, k every k-th), got {value!r}"
            )
    for name in ("rope_theta", "eps"):
        if name in values:
            value = values[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                out.append(f"{name} must be a positive number, got {value!r}")
    return out
