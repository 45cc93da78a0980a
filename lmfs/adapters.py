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
    from lmfs.tokenizer.train import train_bpe

    return train_bpe(input_path, vocab_size, special_tokens, **kwargs)


def get_tokenizer(
    vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: list[str] | None = None
) -> Any:
    from lmfs.tokenizer.tokenizer import Tokenizer

    return Tokenizer(vocab, merges, special_tokens)


# =============================================================================================== nn


def run_linear(d_in: int, d_out: int, weights: Tensor, in_features: Tensor) -> Tensor:
    from lmfs.nn import Linear

    layer = Linear(d_in, d_out, device=weights.device, dtype=weights.dtype)
    layer.load_state_dict({"weight": weights})
    return layer(in_features)


def run_embedding(vocab_size: int, d_model: int, weights: Tensor, token_ids: Tensor) -> Tensor:
    from lmfs.nn import Embedding

    layer = Embedding(vocab_size, d_model, device=weights.device, dtype=weights.dtype)
    layer.load_state_dict({"weight": weights})
    return layer(token_ids)


def run_swiglu(
    d_model: int, d_ff: int, w1_weight: Tensor, w2_weight: Tensor, w3_weight: Tensor, in_features: Tensor
) -> Tensor:
    from lmfs.nn import SwiGLU

    layer = SwiGLU(d_model, d_ff, device=w1_weight.device, dtype=w1_weight.dtype)
    layer.load_state_dict({"w1.weight": w1_weight, "w2.weight": w2_weight, "w3.weight": w3_weight})
    return layer(in_features)


def run_scaled_dot_product_attention(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None) -> Tensor:
    from lmfs.nn import scaled_dot_product_attention

    return scaled_dot_product_attention(Q, K, V, mask)


def run_multihead_self_attention(
    d_model: int,
    num_heads: int,
    q_proj_weight: Tensor,
    k_proj_weight: Tensor,
    v_proj_weight: Tensor,
    o_proj_weight: Tensor,
    in_features: Tensor,
) -> Tensor:
    from lmfs.nn import MultiHeadSelfAttention, fuse_qkv

    layer = MultiHeadSelfAttention(d_model, num_heads, device=in_features.device, dtype=q_proj_weight.dtype)
    weights = {"attn.q_proj.weight": q_proj_weight, "attn.k_proj.weight": k_proj_weight,
               "attn.v_proj.weight": v_proj_weight}
    layer.load_state_dict({"qkv_proj.weight": fuse_qkv(weights)["attn.qkv_proj.weight"],
                           "output_proj.weight": o_proj_weight})
    return layer(in_features)


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
    from lmfs.nn import MultiHeadSelfAttention, RotaryEmbedding, fuse_qkv

    rope = RotaryEmbedding(theta, d_model // num_heads, max_seq_len, device=in_features.device)
    layer = MultiHeadSelfAttention(d_model, num_heads, rope=rope, device=in_features.device, dtype=q_proj_weight.dtype)
    weights = {"attn.q_proj.weight": q_proj_weight, "attn.k_proj.weight": k_proj_weight,
               "attn.v_proj.weight": v_proj_weight}
    layer.load_state_dict({"qkv_proj.weight": fuse_qkv(weights)["attn.qkv_proj.weight"],
                           "output_proj.weight": o_proj_weight})
    return layer(in_features, token_positions)


def run_rope(d_k: int, theta: float, max_seq_len: int, in_query_or_key: Tensor, token_positions: Tensor) -> Tensor:
    from lmfs.nn import RotaryEmbedding

    return RotaryEmbedding(theta, d_k, max_seq_len, device=in_query_or_key.device)(in_query_or_key, token_positions)


def run_transformer_block(
    d_model: int,
    num_heads: int,
    d_ff: int,
    max_seq_len: int,
    theta: float,
    weights: dict[str, Tensor],
    in_features: Tensor,
) -> Tensor:
    from lmfs.nn import TransformerBlock, TransformerConfig, load_cs336_state_dict
    from lmfs.nn.rope import RotaryEmbedding

    config = TransformerConfig(vocab_size=1, context_length=max_seq_len, d_model=d_model, num_layers=1,
                               num_heads=num_heads, d_ff=d_ff, rope_theta=theta)
    rope = RotaryEmbedding(theta, d_model // num_heads, max_seq_len, device=in_features.device)
    block = TransformerBlock(config, rope=rope, device=in_features.device, dtype=in_features.dtype)
    load_cs336_state_dict(block, weights)
    return block(in_features)


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
    from lmfs.nn import TransformerConfig, TransformerLM, load_cs336_state_dict

    config = TransformerConfig(vocab_size=vocab_size, context_length=context_length, d_model=d_model,
                               num_layers=num_layers, num_heads=num_heads, d_ff=d_ff, rope_theta=rope_theta)
    weight = weights["token_embeddings.weight"]
    model = TransformerLM(config, device=weight.device, dtype=weight.dtype)
    load_cs336_state_dict(model, weights)
    return model(in_indices)


def run_rmsnorm(d_model: int, eps: float, weights: Tensor, in_features: Tensor) -> Tensor:
    from lmfs.nn import RMSNorm

    layer = RMSNorm(d_model, eps=eps, device=weights.device, dtype=weights.dtype)
    layer.load_state_dict({"weight": weights})
    return layer(in_features)


def run_silu(in_features: Tensor) -> Tensor:
    from lmfs.nn import silu

    return silu(in_features)


def run_softmax(in_features: Tensor, dim: int) -> Tensor:
    from lmfs.nn import softmax

    return softmax(in_features, dim=dim)


def run_cross_entropy(inputs: Tensor, targets: Tensor) -> Tensor:
    from lmfs.nn import cross_entropy

    return cross_entropy(inputs, targets)


# =============================================================================================== optim


def run_gradient_clipping(parameters: Iterable[torch.nn.Parameter], max_l2_norm: float) -> None:
    from lmfs.optim import clip_grad_norm_

    clip_grad_norm_(parameters, max_l2_norm)


def get_adamw_cls() -> type[torch.optim.Optimizer]:
    from lmfs.optim import AdamW

    return AdamW


def run_get_lr_cosine_schedule(
    it: int, max_learning_rate: float, min_learning_rate: float, warmup_iters: int, cosine_cycle_iters: int
) -> float:
    from lmfs.optim import cosine_lr

    return cosine_lr(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters)


# =============================================================================================== train


def run_get_batch(
    dataset: npt.NDArray, batch_size: int, context_length: int, device: str
) -> tuple[Tensor, Tensor]:
    from lmfs.train.data import get_batch

    return get_batch(dataset, batch_size, context_length, device)


def run_save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    out: str | os.PathLike | BinaryIO | IO[bytes],
) -> None:
    from lmfs.train.checkpoint import save_checkpoint

    save_checkpoint(model, optimizer, iteration, out)


def run_load_checkpoint(
    src: str | os.PathLike | BinaryIO | IO[bytes], model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> int:
    from lmfs.train.checkpoint import load_checkpoint

    return load_checkpoint(src, model, optimizer)


# =============================================================================================== kernels


def get_flashattention_autograd_function_pytorch() -> type:
    from lmfs.kernels.flash_pytorch import FlashAttentionPyTorch

    return FlashAttentionPyTorch


def get_flashattention_autograd_function_triton() -> type:
    from lmfs.kernels.flash_triton import FlashAttentionTriton

    return FlashAttentionTriton


# =============================================================================================== scaling


def run_fit_chinchilla(
    n_params: Sequence[float], n_tokens: Sequence[float], losses: Sequence[float]
) -> dict[str, float]:
    from lmfs.scaling.parametric import fit_chinchilla

    return fit_chinchilla(n_params, n_tokens, losses).params.as_dict()


def run_isoflops_optimum(
    parameters: Sequence[float],
    compute_budgets: Sequence[float],
    losses: Sequence[float],
    target_budgets: Sequence[float],
) -> list[tuple[float, float]]:
    import pandas as pd

    from lmfs.scaling.isoflop import fit_isoflop

    table = pd.DataFrame({"n_params": parameters, "compute": compute_budgets, "loss": losses}, dtype=float)
    n_opt, d_opt = fit_isoflop(table, approach=2).predict(target_budgets)
    return [(float(n), float(d)) for n, d in zip(n_opt, d_opt, strict=True)]


def run_training_flops(
    vocab_size: int, context_length: int, d_model: int, num_layers: int, num_heads: int, d_ff: int, batch_size: int
) -> float:
    from lmfs.nn.config import TransformerConfig
    from lmfs.scaling.accounting import training_step_flops

    config = TransformerConfig(vocab_size=vocab_size, context_length=context_length, d_model=d_model,
                               num_layers=num_layers, num_heads=num_heads, d_ff=d_ff)
    return training_step_flops(config, batch_size)


def run_chinchilla_allocation(
    E: float, A: float, B: float, alpha: float, beta: float, compute_budget: float
) -> tuple[float, float]:
    """lmfs: compute-optimal (N_opt, D_opt) of L = E + A/N^alpha + B/D^beta under C = 6ND."""
    from lmfs.scaling.parametric import ChinchillaParams

    n_opt, d_opt = ChinchillaParams(E=E, A=A, B=B, alpha=alpha, beta=beta).allocation(compute_budget)
    return float(n_opt), float(d_opt)


def get_scaling_api_simulator(total_flops_budget: float, seed: int = 0) -> Any:
    """lmfs: a training-API simulator with ``query(d_model, num_layers, num_heads, batch_size, learning_rate,
    train_flops) -> float`` and ``spent`` (FLOPs used); over-budget queries raise ValueError."""
    from lmfs.scaling.simulator import TrainingAPISimulator

    return TrainingAPISimulator(total_budget=total_flops_budget, seed=seed)


# =============================================================================================== parallel: DDP


def get_ddp_individual_parameters(module: torch.nn.Module) -> torch.nn.Module:
    """lmfs: broadcasts rank 0's parameters and buffers, then all-reduces each gradient asynchronously from its
    post-accumulate-grad hook; without an initialized process group it acts as world size 1."""
    from lmfs.parallel.ddp import DDPIndividualParameters

    return DDPIndividualParameters(module)


def ddp_individual_parameters_on_after_backward(
    ddp_model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    ddp_model.finish_gradient_synchronization()


def get_ddp_bucketed(module: torch.nn.Module, bucket_size_mb: float) -> torch.nn.Module:
    """lmfs: buckets of at most ``bucket_size_mb`` MiB in reverse parameter order, each all-reduced (flattened,
    asynchronously) once all its gradients are ready."""
    from lmfs.parallel.ddp import DDPBucketed

    return DDPBucketed(module, bucket_size_mb)


def ddp_bucketed_on_after_backward(ddp_model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    ddp_model.finish_gradient_synchronization()


def ddp_bucketed_on_train_batch_start(ddp_model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    ddp_model.on_train_batch_start()


# ---------------------------------------------------------------------------- parallel: the 2026 names (DDP, FSDP)


def get_ddp(module: torch.nn.Module) -> torch.nn.Module:
    """lmfs (2026 name): as get_ddp_individual_parameters - rank-0 broadcast, one async all-reduce per gradient
    as soon as it is ready."""
    from lmfs.parallel.ddp import DDPIndividualParameters

    return DDPIndividualParameters(module)


def ddp_on_after_backward(ddp_model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    ddp_model.finish_gradient_synchronization()


def get_fsdp(module: torch.nn.Module, compute_dtype: torch.dtype | None = None) -> torch.nn.Module:
    """lmfs: every trainable parameter sharded 1/world per rank (fp32 master pieces), all-gathered (in
    ``compute_dtype``) before each unit's forward and again in backward, gradients reduce-scattered as they
    become ready; frozen parameters and buffers replicated."""
    from lmfs.parallel.fsdp import FSDP

    return FSDP(module, compute_dtype=compute_dtype)


def fsdp_on_after_backward(fsdp_model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    fsdp_model.finish_gradient_synchronization()


def fsdp_gather_full_params(fsdp_model: torch.nn.Module) -> dict[str, Tensor]:
    from lmfs.parallel.fsdp import gather_full_params

    return gather_full_params(fsdp_model)


# =============================================================================================== parallel: ZeRO-1


def get_sharded_optimizer(params: Any, optimizer_cls: type[torch.optim.Optimizer], **kwargs: Any) -> Any:
    """lmfs: each rank keeps ``optimizer_cls`` state for its own shard of ``params`` only; without an
    initialized process group it acts as world size 1."""
    from lmfs.parallel.sharded_optimizer import ShardedOptimizer

    return ShardedOptimizer(params, optimizer_cls, **kwargs)


# ===== align: data, parsing, DPO


def get_packed_sft_dataset(
    tokenizer: Any, dataset_path: str | os.PathLike, seq_length: int, shuffle: bool
) -> torch.utils.data.Dataset:
    """lmfs: Alpaca-formatted documents, each ``tokenizer.encode(text) + [eos]``, concatenated (documents shuffled
    first if asked) and cut into ``(N - 1) // seq_length`` windows; labels are the next tokens."""
    from lmfs.align.data import PackedSFTDataset

    return PackedSFTDataset(tokenizer, dataset_path, seq_length, shuffle)


def run_iterate_batches(
    dataset: torch.utils.data.Dataset, batch_size: int, shuffle: bool
) -> Iterable[dict[str, Tensor]]:
    """lmfs: ``ceil(len(dataset) / batch_size)`` batches of stacked tensors (the last may be short)."""
    from lmfs.align.data import BatchIterator

    return BatchIterator(dataset, batch_size, shuffle)


def run_parse_mmlu_response(mmlu_example: dict[str, Any], model_output: str) -> str | None:
    from lmfs.align.parsing import parse_mmlu_response

    return parse_mmlu_response(mmlu_example, model_output)


def run_parse_gsm8k_response(model_output: str) -> str | None:
    from lmfs.align.parsing import parse_gsm8k_response

    return parse_gsm8k_response(model_output)


def run_compute_per_instance_dpo_loss(
    lm: torch.nn.Module,
    lm_ref: torch.nn.Module,
    tokenizer: Any,
    beta: float,
    prompt: str,
    response_chosen: str,
    response_rejected: str,
) -> Tensor:
    from lmfs.align.dpo import per_instance_dpo_loss

    return per_instance_dpo_loss(lm, lm_ref, tokenizer, beta, prompt, response_chosen, response_rejected)


# =============================================================================================== align: SFT / GRPO


def run_tokenize_prompt_and_output(
    prompt_strs: list[str], output_strs: list[str], tokenizer: Any
) -> dict[str, Tensor]:
    from lmfs.align.sft import tokenize_prompt_and_output

    return tokenize_prompt_and_output(prompt_strs, output_strs, tokenizer)


def run_compute_entropy(logits: Tensor) -> Tensor:
    from lmfs.align.sft import compute_entropy

    return compute_entropy(logits)


def run_get_response_log_probs(
    model: Any, input_ids: Tensor, labels: Tensor, return_token_entropy: bool
) -> dict[str, Tensor]:
    from lmfs.align.sft import get_response_log_probs

    return get_response_log_probs(model, input_ids, labels, return_token_entropy)


def run_masked_normalize(
    tensor: Tensor, mask: Tensor, dim: int | None = None, normalize_constant: float = 1.0
) -> Tensor:
    from lmfs.align.sft import masked_normalize

    return masked_normalize(tensor, mask, dim=dim, normalize_constant=normalize_constant)


def run_sft_microbatch_train_step(
    policy_log_probs: Tensor,
    response_mask: Tensor,
    gradient_accumulation_steps: int,
    normalize_constant: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    from lmfs.align.sft import sft_microbatch_train_step

    return sft_microbatch_train_step(policy_log_probs, response_mask, gradient_accumulation_steps, normalize_constant)


def run_compute_group_normalized_rewards(
    reward_fn: Any,
    rollout_responses: list[str],
    repeated_ground_truths: list[str],
    group_size: int,
    advantage_eps: float,
    normalize_by_std: bool,
) -> tuple[Tensor, Tensor, dict[str, float]]:
    from lmfs.align.grpo import compute_group_normalized_rewards

    return compute_group_normalized_rewards(
        reward_fn, rollout_responses, repeated_ground_truths, group_size, advantage_eps, normalize_by_std
    )


def run_compute_naive_policy_gradient_loss(raw_rewards_or_advantages: Tensor, policy_log_probs: Tensor) -> Tensor:
    from lmfs.align.grpo import compute_naive_policy_gradient_loss

    return compute_naive_policy_gradient_loss(raw_rewards_or_advantages, policy_log_probs)


def run_compute_grpo_clip_loss(
    advantages: Tensor, policy_log_probs: Tensor, old_log_probs: Tensor, cliprange: float
) -> tuple[Tensor, dict[str, Tensor]]:
    from lmfs.align.grpo import compute_grpo_clip_loss

    return compute_grpo_clip_loss(advantages, policy_log_probs, old_log_probs, cliprange)


def run_compute_policy_gradient_loss(
    policy_log_probs: Tensor,
    loss_type: str,
    raw_rewards: Tensor | None = None,
    advantages: Tensor | None = None,
    old_log_probs: Tensor | None = None,
    cliprange: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    from lmfs.align.grpo import compute_policy_gradient_loss

    return compute_policy_gradient_loss(policy_log_probs, loss_type, raw_rewards, advantages, old_log_probs, cliprange)


def run_masked_mean(tensor: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    from lmfs.align.grpo import masked_mean

    return masked_mean(tensor, mask, dim=dim)


def run_grpo_microbatch_train_step(
    policy_log_probs: Tensor,
    response_mask: Tensor,
    gradient_accumulation_steps: int,
    loss_type: str,
    raw_rewards: Tensor | None = None,
    advantages: Tensor | None = None,
    old_log_probs: Tensor | None = None,
    cliprange: float | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    from lmfs.align.grpo import grpo_microbatch_train_step

    return grpo_microbatch_train_step(
        policy_log_probs,
        response_mask,
        gradient_accumulation_steps,
        loss_type,
        raw_rewards=raw_rewards,
        advantages=advantages,
        old_log_probs=old_log_probs,
        cliprange=cliprange,
    )


# ===== data: deduplication


def run_exact_line_deduplication(input_files: list[os.PathLike], output_directory: os.PathLike) -> None:
    from lmfs.data.dedup import exact_line_deduplication

    exact_line_deduplication(input_files, output_directory)


def run_minhash_deduplication(
    input_files: list[os.PathLike],
    num_hashes: int,
    num_bands: int,
    ngrams: int,
    jaccard_threshold: float,
    output_directory: os.PathLike,
) -> None:
    from lmfs.data.dedup import minhash_deduplication

    minhash_deduplication(input_files, num_hashes, num_bands, ngrams, jaccard_threshold, output_directory)


# ===== data: extraction (Resiliparse), PII, Gopher (lmfs/data/extract.py, pii.py, gopher.py)


def run_extract_text_from_html_bytes(html_bytes: bytes) -> str | None:
    from lmfs.data.extract import extract_text_from_html_bytes

    return extract_text_from_html_bytes(html_bytes)


def run_mask_emails(text: str) -> tuple[str, int]:
    from lmfs.data.pii import mask_emails

    return mask_emails(text)


def run_mask_phone_numbers(text: str) -> tuple[str, int]:
    from lmfs.data.pii import mask_phone_numbers

    return mask_phone_numbers(text)


def run_mask_ips(text: str) -> tuple[str, int]:
    from lmfs.data.pii import mask_ips

    return mask_ips(text)


def run_gopher_quality_filter(text: str) -> bool:
    from lmfs.data.gopher import gopher_quality_filter

    return gopher_quality_filter(text)


# ===== data: language ID, harmful content, quality (lmfs/data/langid.py, harmful.py, quality.py)


def run_identify_language(text: str) -> tuple[Any, float]:
    from lmfs.data.langid import identify_language

    return identify_language(text)


def run_classify_nsfw(text: str) -> tuple[Any, float]:
    from lmfs.data.harmful import classify_nsfw

    return classify_nsfw(text)


def run_classify_toxic_speech(text: str) -> tuple[Any, float]:
    from lmfs.data.harmful import classify_toxic_speech

    return classify_toxic_speech(text)


def run_classify_quality(text: str) -> tuple[Any, float]:
    from lmfs.data.quality import classify_quality

    return classify_quality(text)
