"""FlashAttention-2: a tiled PyTorch reference and Triton forward/backward kernels.

Nothing heavy is imported here, not even torch (a CLI builds its ``--attention`` choices from
:func:`~lmfs.kernels.attention_backends.attention_names`); the kernels are in the submodules, and
:mod:`lmfs.kernels.flash_triton` imports Triton when it is first used, so a test can set ``TRITON_INTERPRET=1``
before that and run the kernels on the CPU.

* :class:`~lmfs.kernels.flash_pytorch.FlashAttentionPyTorch` — ``apply(Q, K, V, is_causal)`` on ``(..., seq, d)``.
* :class:`~lmfs.kernels.flash_triton.FlashAttentionTriton` — the Triton ``autograd.Function`` (same signature).
* :func:`~lmfs.kernels.attention.flash_attention`, :func:`~lmfs.kernels.attention.triton_flash_attention`,
  :func:`~lmfs.kernels.attention.pytorch_flash_attention`, :func:`~lmfs.kernels.attention.naive_attention` — the
  kernels behind the model's attention seam, on ``(batch, heads, seq, d)``.
* :func:`~lmfs.kernels.peers.sdpa_attention` — torch SDPA behind the same seam (the peers).
* :mod:`lmfs.kernels.attention_backends` — the table of attention backends by name (lmfs.nn's own ``default``,
  ``naive``, ``pytorch``, ``triton``, the ``sdpa*`` peers): :func:`~lmfs.kernels.attention_backends.make_attention`,
  :func:`~lmfs.kernels.attention_backends.attention_names`.
* :mod:`lmfs.kernels.bench` — FLOP count and timed callables shared by the benchmarks;
  :mod:`lmfs.kernels.compile_check` — compile the Triton kernels for sm_90 without a GPU.
"""

from __future__ import annotations

from lmfs.kernels.attention_backends import BACKENDS, attention_names, get_backend, make_attention

__all__ = ["BACKENDS", "attention_names", "get_backend", "make_attention"]
