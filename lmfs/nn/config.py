"""The Transformer LM's hyperparameters, with validation that says what to fix."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from lmfs.nn.ffn import swiglu_hidden_dim

NORMS = ("pre", "post", "none")
POSITIONS = ("rope", "none")
FFNS = ("swiglu", "silu")


@dataclass
class TransformerConfig:
    """Shape and ablation switches of :class:`~lmfs.nn.TransformerLM`.

    ``norm``: "pre" (course default, final RMSNorm), "post" (normalize after each residual add; no final
    norm) or "none". ``position``: "rope" or "none" (NoPE). ``ffn``: "swiglu" or "silu" (ungated).
    ``num_kv_heads`` < ``num_heads`` gives grouped-query attention. ``tie_embeddings`` shares the token
    embedding with the output projection.
    """

    vocab_size: int
    context_length: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    rope_theta: float = 10000.0
    num_kv_heads: int | None = None
    tie_embeddings: bool = False
    norm: Literal["pre", "post", "none"] = "pre"
    position: Literal["rope", "none"] = "rope"
    ffn: Literal["swiglu", "silu"] = "swiglu"
    eps: float = 1e-5

    def __post_init__(self) -> None:
        self.validate()

    @property
    def d_head(self) -> int:
        return self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    def validate(self) -> None:
        """Raise ValueError naming the field and the fix when the config is inconsistent."""
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"TransformerConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"TransformerConfig: d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.num_kv_heads is not None and (self.num_kv_heads <= 0 or self.num_heads % self.num_kv_heads):
            raise ValueError(
                f"TransformerConfig: num_kv_heads ({self.num_kv_heads}) must be positive and divide "
                f"num_heads ({self.num_heads})"
            )
        if self.position == "rope" and self.d_head % 2:
            raise ValueError(
                f"TransformerConfig: RoPE needs an even head dim, got d_model/num_heads = {self.d_head}"
            )
        for name, allowed in (("norm", NORMS), ("position", POSITIONS), ("ffn", FFNS)):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"TransformerConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if self.rope_theta <= 0 or self.eps <= 0:
            raise ValueError(
                f"TransformerConfig: rope_theta and eps must be positive ({self.rope_theta}, {self.eps})"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformerConfig:
        """Build from a dict, rejecting unknown keys by name (a typo in a config file fails loudly)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TransformerConfig: unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)


def default_d_ff(d_model: int, ffn: str = "swiglu", multiple_of: int = 64) -> int:
    """The conventional hidden size: ≈ 8/3·d_model (multiple of 64) for SwiGLU, 4·d_model for the SiLU FFN."""
    return swiglu_hidden_dim(d_model, multiple_of) if ffn == "swiglu" else 4 * d_model
