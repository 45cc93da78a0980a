"""lmfs's own adapter: thin glue from the spec interface (shared docs/ADAPTERS.md) to lmfs.

Each function here has the name and parameters of the CS336 adapter interface, so the same specs grade
lmfs and any student's adapter file. Imports are local so that grading one unit never imports another.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import IO, Any, BinaryIO

import numpy.typing as npt
import torch
from torch import Tensor

# =============================================================================================== tokenizer


def run_train_bpe(
    input_path: str | os.PathLike, vocab_size: int, special_tokens: list[str], **kwargs: Any
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    raise NotImplementedError


def get_tokenizer(
    vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: list[str] | None = None
) -> Any:
    raise NotImplementedError


# =============================================================================================== nn


def run_linear(d_in: int, d_out: int, weights: Tensor, in_features: Tensor) -> Tensor:
    raise NotImplementedError


def run_embedding(vocab_size: int, d_model: int, weights: Tensor, token_ids: Tensor) -> Tensor:
    raise NotImplementedError


def run_swiglu(
    d_model: int, d_ff: int, w1_weight: Tensor, w2_weight: Tensor, w3_weight: Tensor, in_features: Tensor
) -> Tensor:
    raise NotImplementedError


def run_scaled_dot_product_attention(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None) -> Tensor:
    raise NotImplementedError


def run_multihead_self_attention(
    d_model: int,
    num_heads: int,
    q_proj_weight: Tensor,
    k_proj_weight: Tensor,
    v_proj_weight: Tensor,
    o_proj_weight: Tensor,
    in_features: Tensor,
) -> Tensor:
    raise NotImplementedError


def run_multihead_self_attention_with_rope(
    d_model: int,
    num_heads: int,
    max_seq_len: int,
    theta: float,
    q_proj_weight: Tensor,
    k_proj_weight: Tensor,
    v_proj_weight: Tensor,
    o_proj_weight: Tensor,
    in_features: Tensor,
    token_positions: Tensor | None = None,
) -> Tensor:
    raise NotImplementedError


def run_rope(d_k: int, theta: float, max_seq_len: int, in_query_or_key: Tensor, token_positions: Tensor) -> Tensor:
    raise NotImplementedError


def run_transformer_block(
    d_model: int,
    num_heads: int,
    d_ff: int,
    max_seq_len: int,
    theta: float,
    weights: dict[str, Tensor],
    in_features: Tensor,
) -> Tensor:
    raise NotImplementedError


def run_transformer_lm(
    vocab_size: int,
    context_length: int,
    d_model: int,
    num_layers: int,
    num_heads: int,
    d_ff: int,
    rope_theta: float,
    weights: dict[str, Tensor],
    in_indices: Tensor,
) -> Tensor:
    raise NotImplementedError


def run_rmsnorm(d_model: int, eps: float, weights: Tensor, in_features: Tensor) -> Tensor:
    raise NotImplementedError


def run_silu(in_features: Tensor) -> Tensor:
    raise NotImplementedError


def run_softmax(in_features: Tensor, dim: int) -> Tensor:
    raise NotImplementedError


def run_cross_entropy(inputs: Tensor, targets: Tensor) -> Tensor:
    raise NotImplementedError


# =============================================================================================== optim


def run_gradient_clipping(parameters: Iterable[torch.nn.Parameter], max_l2_norm: float) -> None:
    raise NotImplementedError


def get_adamw_cls() -> type[torch.optim.Optimizer]:
    raise NotImplementedError


def run_get_lr_cosine_schedule(
    it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int, cosine_cycle_iters: int
) -> float:
    raise NotImplementedError


# =============================================================================================== train


def run_get_batch(
    dataset: npt.NDArray, batch_size: int, context_length: int, device: str
) -> tuple[Tensor, Tensor]:
    raise NotImplementedError


def run_save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    out: str | os.PathLike | BinaryIO | IO[bytes],
) -> None:
    raise NotImplementedError


def run_load_checkpoint(
    src: str | os.PathLike | BinaryIO | IO[bytes], model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> int:
    raise NotImplementedError


# =============================================================================================== kernels


def get_flashattention_autograd_function_pytorch() -> type:
    raise NotImplementedError


def get_flashattention_autograd_function_triton() -> type:
    raise NotImplementedError


# =============================================================================================== scaling


def run_fit_chinchilla(
    n_params: Sequence[float], n_tokens: Sequence[float], losses: Sequence[float]
) -> dict[str, float]:
    raise NotImplementedError


def run_isoflops_optimum(
    parameters: Sequence[float],
    compute_budgets: Sequence[float],
    losses: Sequence[float],
    target_budgets: Sequence[float],
) -> list[tuple[float, float]]:
    raise NotImplementedError


def run_training_flops(
    vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int, d_ff: int, batch_size: int
) -> float:
    raise NotImplementedError
