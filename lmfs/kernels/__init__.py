"""FlashAttention-2: a tiled PyTorch reference and Triton forward/backward kernels.

Nothing heavy is imported here: :mod:`lmfs.kernels.flash_triton` imports Triton when it is first used, so a test
can set ``TRITON_INTERPRET=1`` before that and run the kernels on the CPU.

* :class:`~lmfs.kernels.flash_pytorch.FlashAttentionPyTorch` — ``apply(Q, K, V, is_causal)`` on ``(..., seq, d)``.
* :func:`~lmfs.kernels.flash_triton.get_triton_function` — the Triton ``autograd.Function`` (same signature).
* :func:`~lmfs.kernels.attention.flash_attention` / :func:`~lmfs.kernels.attention.make_attention_fn` — the
  ``(batch, heads, seq, d)`` entry point for a model's ``attention_fn`` seam.
* :mod:`lmfs.kernels.bench` — FLOP count and timed callables shared by the benchmarks;
  :mod:`lmfs.kernels.compile_check` — compile the Triton kernels for sm_90 without a GPU.
"""

from __future__ import annotations

from lmfs.kernels.attention import ATTENTION_BACKENDS, flash_attention, make_attention_fn

__all__ = ["ATTENTION_BACKENDS", "flash_attention", "make_attention_fn"]
