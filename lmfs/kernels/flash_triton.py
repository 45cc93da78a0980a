"""FlashAttention-2 in Triton: a forward kernel and a two-kernel backward (dK/dV by key tile, dQ by query tile).

Importing this module imports Triton. Set ``TRITON_INTERPRET=1`` *before* the import to run the kernels on the CPU
through Triton's interpreter (tests do this); there the kernels run with one fixed 16×16 tile configuration. On a
GPU they are autotuned over a small Hopper-minded set of block sizes, warps and pipeline stages
(``LMFS_TRITON_AUTOTUNE=0`` uses the first config of each set instead, which saves compile time in tests).

Layout: inputs are viewed as ``(batch, heads, seq, d)`` with any strides (the last dim must be contiguous), so the
model can pass its head-split projections without a copy; ``(batch, seq, d)`` inputs get ``heads = 1``. One program
handles one tile of rows for one (batch, head):

* forward — grid ``(query tiles, batch·heads)``; loops over key tiles with an online softmax in base 2
  (``exp2``, scale folded into ``log2 e``), float32 accumulators. Causal: key tiles entirely past the diagonal are
  never visited, tiles entirely below it run without masks, and only the diagonal / ragged tiles are masked.
  Query tiles are issued heaviest first for causal attention to balance the tail of the grid.
* backward — ``D = rowsum(dO∘O)`` by a small kernel; then dK, dV with one program per key tile (loop over query
  tiles), and dQ with one program per query tile (loop over key tiles). Each output tile has one writer: no atomics.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from lmfs.kernels.flash_pytorch import _check_inputs

_LOG2E = tl.constexpr(1.4426950408889634)
_LN2 = tl.constexpr(0.6931471805599453)

MIN_HEAD_DIM, MAX_HEAD_DIM = 16, 128
INTERPRETER_TILES = (16, 16)  # (BLOCK_Q, BLOCK_K) on the interpreter


def interpreting() -> bool:
    """True when Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() not in ("", "0", "false", "no")


# ----------------------------------------------------------------------------------------------- helpers


@triton.jit
def _load_tile(ptrs, rows, n_rows, cols, HEAD_DIM: tl.constexpr, MASK_ROWS: tl.constexpr, PAD_D: tl.constexpr):
    """Load a (rows × BLOCK_D) tile; masks only what the constexpr flags say can be out of range."""
    if MASK_ROWS:
        if PAD_D:
            x = tl.load(ptrs, mask=(rows[:, None] < n_rows) & (cols[None, :] < HEAD_DIM), other=0.0)
        else:
            x = tl.load(ptrs, mask=rows[:, None] < n_rows, other=0.0)
    else:
        if PAD_D:
            x = tl.load(ptrs, mask=cols[None, :] < HEAD_DIM, other=0.0)
        else:
            x = tl.load(ptrs)
    return x


@triton.jit
def _store_tile(ptrs, x, rows, n_rows, cols, HEAD_DIM: tl.constexpr, PAD_D: tl.constexpr):
    if PAD_D:
        tl.store(ptrs, x, mask=(rows[:, None] < n_rows) & (cols[None, :] < HEAD_DIM))
    else:
        tl.store(ptrs, x, mask=rows[:, None] < n_rows)


# ----------------------------------------------------------------------------------------------- forward


@triton.jit
def _fwd_key_tiles(
    acc, m_i, l_i, q, k_base, v_base, stride_kn, stride_vn, offs_q, offs_d, start, stop, n_k, qk_scale,
    BLOCK_K: tl.constexpr, HEAD_DIM: tl.constexpr, PAD_D: tl.constexpr, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr,
):
    offs_k0 = tl.arange(0, BLOCK_K)
    for ks in range(start, stop, BLOCK_K):
        offs_k = ks + offs_k0
        k = _load_tile(k_base + offs_k[:, None] * stride_kn + offs_d[None, :], offs_k, n_k, offs_d, HEAD_DIM, MASK, PAD_D)
        v = _load_tile(v_base + offs_k[:, None] * stride_vn + offs_d[None, :], offs_k, n_k, offs_d, HEAD_DIM, MASK, PAD_D)
        s = tl.dot(q, tl.trans(k)) * qk_scale  # scores in log2 units, (BLOCK_Q, BLOCK_K)
        if MASK:
            keep = offs_k[None, :] < n_k
            if IS_CAUSAL:
                keep = keep & (offs_k[None, :] <= offs_q[:, None])
            s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    return acc, m_i, l_i


@triton.jit
def _fwd_kernel(
    Q, K, V, O, L,
    stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_on,
    n_heads, n_q, n_k, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, PAD_D: tl.constexpr, IS_CAUSAL: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    if IS_CAUSAL:  # heaviest query tiles first
        pid = tl.num_programs(0) - 1 - pid
    bh = tl.program_id(1)
    b = (bh // n_heads).to(tl.int64)
    h = (bh % n_heads).to(tl.int64)
    q0 = pid * BLOCK_Q
    offs_q = q0 + tl.arange(0, BLOCK_Q)
    offs_d = tl.arange(0, BLOCK_D)
    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    q = _load_tile(q_base + offs_q[:, None] * stride_qn + offs_d[None, :], offs_q, n_q, offs_d, HEAD_DIM, True, PAD_D)

    m_i = tl.full([BLOCK_Q], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_Q], tl.float32)
    acc = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
    n_k_full = (n_k // BLOCK_K) * BLOCK_K
    if IS_CAUSAL:  # tiles below the diagonal are unmasked; the diagonal band is masked; the rest is skipped
        lo = tl.minimum((q0 // BLOCK_K) * BLOCK_K, n_k_full)
        hi = tl.minimum(q0 + BLOCK_Q, n_k)
    else:
        lo = n_k_full
        hi = n_k
    acc, m_i, l_i = _fwd_key_tiles(acc, m_i, l_i, q, k_base, v_base, stride_kn, stride_vn, offs_q, offs_d, 0, lo,
                                   n_k, qk_scale, BLOCK_K, HEAD_DIM, PAD_D, False, IS_CAUSAL)
    acc, m_i, l_i = _fwd_key_tiles(acc, m_i, l_i, q, k_base, v_base, stride_kn, stride_vn, offs_q, offs_d, lo, hi,
                                   n_k, qk_scale, BLOCK_K, HEAD_DIM, PAD_D, True, IS_CAUSAL)

    o = acc / l_i[:, None]
    o_base = O + b * stride_ob + h * stride_oh
    _store_tile(o_base + offs_q[:, None] * stride_on + offs_d[None, :], o.to(O.dtype.element_ty), offs_q, n_q, offs_d,
                HEAD_DIM, PAD_D)
    lse = (m_i + tl.math.log2(l_i)) * _LN2  # natural-log logsumexp of the scaled scores
    tl.store(L + bh.to(tl.int64) * n_q + offs_q, lse, mask=offs_q < n_q)


# ----------------------------------------------------------------------------------------------- backward


@triton.jit
def _bwd_delta_kernel(
    O, DO, Delta, stride_ob, stride_oh, stride_on, stride_gb, stride_gh, stride_gn, n_heads, n_q,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, PAD_D: tl.constexpr, BLOCK_Q: tl.constexpr,
):
    bh = tl.program_id(1)
    b = (bh // n_heads).to(tl.int64)
    h = (bh % n_heads).to(tl.int64)
    offs_q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_d = tl.arange(0, BLOCK_D)
    o = _load_tile(O + b * stride_ob + h * stride_oh + offs_q[:, None] * stride_on + offs_d[None, :],
                   offs_q, n_q, offs_d, HEAD_DIM, True, PAD_D)
    do = _load_tile(DO + b * stride_gb + h * stride_gh + offs_q[:, None] * stride_gn + offs_d[None, :],
                    offs_q, n_q, offs_d, HEAD_DIM, True, PAD_D)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(Delta + bh.to(tl.int64) * n_q + offs_q, delta, mask=offs_q < n_q)


@triton.jit
def _bwd_kv_query_tiles(
    dk, dv, k, v, q_base, do_base, l_base, d_base, stride_qn, stride_gn, offs_k, offs_d, start, stop, n_q, qk_scale,
    BLOCK_Q: tl.constexpr, HEAD_DIM: tl.constexpr, PAD_D: tl.constexpr, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr,
):
    offs_q0 = tl.arange(0, BLOCK_Q)
    for qs in range(start, stop, BLOCK_Q):
        offs_q = qs + offs_q0
        q = _load_tile(q_base + offs_q[:, None] * stride_qn + offs_d[None, :], offs_q, n_q, offs_d, HEAD_DIM, MASK, PAD_D)
        do = _load_tile(do_base + offs_q[:, None] * stride_gn + offs_d[None, :], offs_q, n_q, offs_d, HEAD_DIM, MASK,
                        PAD_D)
        if MASK:
            lse = tl.load(l_base + offs_q, mask=offs_q < n_q, other=0.0)
            delta = tl.load(d_base + offs_q, mask=offs_q < n_q, other=0.0)
        else:
            lse = tl.load(l_base + offs_q)
            delta = tl.load(d_base + offs_q)
        st = tl.dot(k, tl.trans(q)) * qk_scale  # S^T in log2 units, (BLOCK_K, BLOCK_Q)
        pt = tl.math.exp2(st - lse[None, :] * _LOG2E)  # P^T recomputed from the saved logsumexp
        if MASK:
            keep = offs_q[None, :] < n_q
            if IS_CAUSAL:
                keep = keep & (offs_q[None, :] >= offs_k[:, None])
            pt = tl.where(keep, pt, 0.0)
        dv += tl.dot(pt.to(do.dtype), do)
        dpt = tl.dot(v, tl.trans(do))  # dP^T
        dst = pt * (dpt - delta[None, :])  # dS^T = P^T ∘ (dP^T − D)
        dk += tl.dot(dst.to(q.dtype), q)
    return dk, dv


@triton.jit
def _bwd_kv_kernel(
    Q, K, V, DO, L, Delta, DK, DV,
    stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_gb, stride_gh, stride_gn, stride_dkb, stride_dkh, stride_dkn, stride_dvb, stride_dvh, stride_dvn,
    n_heads, n_q, n_k, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, PAD_D: tl.constexpr, IS_CAUSAL: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // n_heads).to(tl.int64)
    h = (bh % n_heads).to(tl.int64)
    k0 = pid * BLOCK_K
    offs_k = k0 + tl.arange(0, BLOCK_K)
    offs_d = tl.arange(0, BLOCK_D)
    k = _load_tile(K + b * stride_kb + h * stride_kh + offs_k[:, None] * stride_kn + offs_d[None, :],
                   offs_k, n_k, offs_d, HEAD_DIM, True, PAD_D)
    v = _load_tile(V + b * stride_vb + h * stride_vh + offs_k[:, None] * stride_vn + offs_d[None, :],
                   offs_k, n_k, offs_d, HEAD_DIM, True, PAD_D)
    q_base = Q + b * stride_qb + h * stride_qh
    do_base = DO + b * stride_gb + h * stride_gh
    l_base = L + bh.to(tl.int64) * n_q
    d_base = Delta + bh.to(tl.int64) * n_q
    dk = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)

    n_q_full = (n_q // BLOCK_Q) * BLOCK_Q
    if IS_CAUSAL:  # query tiles above the diagonal are skipped, the band is masked, tiles below are not
        qa = (k0 // BLOCK_Q) * BLOCK_Q
        qb = tl.minimum(tl.cdiv(k0 + BLOCK_K, BLOCK_Q) * BLOCK_Q, tl.cdiv(n_q, BLOCK_Q) * BLOCK_Q)
    else:
        qa = 0
        qb = 0
    dk, dv = _bwd_kv_query_tiles(dk, dv, k, v, q_base, do_base, l_base, d_base, stride_qn, stride_gn, offs_k, offs_d,
                                 qa, qb, n_q, qk_scale, BLOCK_Q, HEAD_DIM, PAD_D, True, IS_CAUSAL)
    dk, dv = _bwd_kv_query_tiles(dk, dv, k, v, q_base, do_base, l_base, d_base, stride_qn, stride_gn, offs_k, offs_d,
                                 qb, n_q_full, n_q, qk_scale, BLOCK_Q, HEAD_DIM, PAD_D, False, IS_CAUSAL)
    dk, dv = _bwd_kv_query_tiles(dk, dv, k, v, q_base, do_base, l_base, d_base, stride_qn, stride_gn, offs_k, offs_d,
                                 tl.maximum(qb, n_q_full), n_q, n_q, qk_scale, BLOCK_Q, HEAD_DIM, PAD_D, True, IS_CAUSAL)
    _store_tile(DK + b * stride_dkb + h * stride_dkh + offs_k[:, None] * stride_dkn + offs_d[None, :],
                (dk * sm_scale).to(DK.dtype.element_ty), offs_k, n_k, offs_d, HEAD_DIM, PAD_D)
    _store_tile(DV + b * stride_dvb + h * stride_dvh + offs_k[:, None] * stride_dvn + offs_d[None, :],
                dv.to(DV.dtype.element_ty), offs_k, n_k, offs_d, HEAD_DIM, PAD_D)


@triton.jit
def _bwd_q_key_tiles(
    dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, offs_q, offs_d, start, stop, n_k, qk_scale,
    BLOCK_K: tl.constexpr, HEAD_DIM: tl.constexpr, PAD_D: tl.constexpr, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr,
):
    offs_k0 = tl.arange(0, BLOCK_K)
    for ks in range(start, stop, BLOCK_K):
        offs_k = ks + offs_k0
        k = _load_tile(k_base + offs_k[:, None] * stride_kn + offs_d[None, :], offs_k, n_k, offs_d, HEAD_DIM, MASK, PAD_D)
        v = _load_tile(v_base + offs_k[:, None] * stride_vn + offs_d[None, :], offs_k, n_k, offs_d, HEAD_DIM, MASK, PAD_D)
        s = tl.dot(q, tl.trans(k)) * qk_scale
        p = tl.math.exp2(s - lse[:, None])
        if MASK:
            keep = offs_k[None, :] < n_k
            if IS_CAUSAL:
                keep = keep & (offs_k[None, :] <= offs_q[:, None])
            p = tl.where(keep, p, 0.0)
        dp = tl.dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k)
    return dq


@triton.jit
def _bwd_q_kernel(
    Q, K, V, DO, L, Delta, DQ,
    stride_qb, stride_qh, stride_qn, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
    stride_gb, stride_gh, stride_gn, stride_dqb, stride_dqh, stride_dqn,
    n_heads, n_q, n_k, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, PAD_D: tl.constexpr, IS_CAUSAL: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    if IS_CAUSAL:
        pid = tl.num_programs(0) - 1 - pid
    bh = tl.program_id(1)
    b = (bh // n_heads).to(tl.int64)
    h = (bh % n_heads).to(tl.int64)
    q0 = pid * BLOCK_Q
    offs_q = q0 + tl.arange(0, BLOCK_Q)
    offs_d = tl.arange(0, BLOCK_D)
    q = _load_tile(Q + b * stride_qb + h * stride_qh + offs_q[:, None] * stride_qn + offs_d[None, :],
                   offs_q, n_q, offs_d, HEAD_DIM, True, PAD_D)
    do = _load_tile(DO + b * stride_gb + h * stride_gh + offs_q[:, None] * stride_gn + offs_d[None, :],
                    offs_q, n_q, offs_d, HEAD_DIM, True, PAD_D)
    lse = tl.load(L + bh.to(tl.int64) * n_q + offs_q, mask=offs_q < n_q, other=0.0) * _LOG2E
    delta = tl.load(Delta + bh.to(tl.int64) * n_q + offs_q, mask=offs_q < n_q, other=0.0)
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    dq = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
    n_k_full = (n_k // BLOCK_K) * BLOCK_K
    if IS_CAUSAL:
        lo = tl.minimum((q0 // BLOCK_K) * BLOCK_K, n_k_full)
        hi = tl.minimum(q0 + BLOCK_Q, n_k)
    else:
        lo = n_k_full
        hi = n_k
    dq = _bwd_q_key_tiles(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, offs_q, offs_d, 0, lo, n_k,
                          qk_scale, BLOCK_K, HEAD_DIM, PAD_D, False, IS_CAUSAL)
    dq = _bwd_q_key_tiles(dq, q, do, lse, delta, k_base, v_base, stride_kn, stride_vn, offs_q, offs_d, lo, hi, n_k,
                          qk_scale, BLOCK_K, HEAD_DIM, PAD_D, True, IS_CAUSAL)
    _store_tile(DQ + b * stride_dqb + h * stride_dqh + offs_q[:, None] * stride_dqn + offs_d[None, :],
                (dq * sm_scale).to(DQ.dtype.element_ty), offs_q, n_q, offs_d, HEAD_DIM, PAD_D)


# ----------------------------------------------------------------------------------------------- tuning

# (BLOCK_Q, BLOCK_K, num_warps, num_stages) per kernel, one list for head dims <= 64 and one for larger ones. Chosen
# by compiling for sm_90 on the CPU (python -m lmfs.kernels.compile_check; cuobjdump --dump-resource-usage): every
# config fits Hopper's shared memory in bf16 and the first of each list spills no registers (d=64 dK/dV with
# (32, 128, 4 warps) spilled 416 B; at d=128 most 128-wide tiles spill, hence the narrower ones). The autotuner
# drops configs that do not fit (e.g. fp32 at d=128); the first entry is the fixed config when autotuning is off.
Config = tuple[int, int, int, int]
CONFIGS: dict[str, dict[str, list[Config]]] = {
    "fwd": {
        "small": [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 2), (128, 128, 8, 3), (128, 32, 4, 4), (64, 64, 4, 3)],
        "large": [(128, 64, 8, 3), (128, 32, 8, 3), (64, 64, 8, 3), (128, 64, 8, 2), (64, 32, 4, 3)],
    },
    "bwd_kv": {
        "small": [(64, 128, 8, 3), (32, 128, 8, 3), (64, 64, 8, 3), (64, 128, 8, 4), (32, 64, 4, 4)],
        "large": [(32, 32, 4, 3), (32, 64, 8, 3), (64, 64, 8, 3), (32, 64, 4, 4)],
    },
    "bwd_q": {
        "small": [(128, 64, 8, 3), (128, 32, 8, 3), (64, 64, 8, 3), (128, 128, 8, 3), (64, 32, 4, 4)],
        "large": [(64, 32, 4, 3), (32, 64, 4, 3), (64, 32, 4, 4), (128, 32, 8, 3)],
    },
}
_TUNE_KEY = ["n_q", "n_k", "HEAD_DIM", "IS_CAUSAL"]
_KERNELS = {"fwd": _fwd_kernel, "bwd_kv": _bwd_kv_kernel, "bwd_q": _bwd_q_kernel}
_tuned: dict[str, object] = {}


def configs_for(name: str, head_dim: int) -> list[Config]:
    """The candidate configs of kernel ``name`` for a head dim."""
    return CONFIGS[name]["small" if head_dim <= 64 else "large"]


def autotune_enabled() -> bool:
    """Autotune on a GPU unless ``LMFS_TRITON_AUTOTUNE=0`` (tests use the fixed configs to save compile time)."""
    return os.environ.get("LMFS_TRITON_AUTOTUNE", "1").strip() not in ("0", "false", "no")


def _tuned_kernel(name: str):
    if name not in _tuned:
        union = list(dict.fromkeys(CONFIGS[name]["small"] + CONFIGS[name]["large"]))

        def prune(configs, named_args, **kwargs):
            head_dim = kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM", 64))
            wanted = set(configs_for(name, int(head_dim)))
            kept = [c for c in configs
                    if (c.kwargs["BLOCK_Q"], c.kwargs["BLOCK_K"], c.num_warps, c.num_stages) in wanted]
            return kept or configs

        _tuned[name] = triton.autotune(
            configs=[triton.Config({"BLOCK_Q": bq, "BLOCK_K": bk}, num_warps=w, num_stages=st) for bq, bk, w, st in union],
            key=_TUNE_KEY,
            prune_configs_by={"early_config_prune": prune},
        )(_KERNELS[name])
    return _tuned[name]


_fixed_choice: dict[tuple, int] = {}  # (kernel, dtype, head dim, causal) -> index of the first config that fits


def _launch(name: str, grid, args: tuple, kwargs: dict) -> None:
    """Launch kernel ``name``: the interpreter's fixed tiles, the autotuner, or (autotune off) the first config
    of the list that fits the chip's shared memory."""
    kernel = _KERNELS[name]
    if interpreting():
        kernel[grid](*args, **kwargs, BLOCK_Q=INTERPRETER_TILES[0], BLOCK_K=INTERPRETER_TILES[1])
        return
    if autotune_enabled():
        _tuned_kernel(name)[grid](*args, **kwargs)
        return
    from triton.runtime.errors import OutOfResources

    key = (name, args[0].dtype, kwargs["HEAD_DIM"], kwargs["IS_CAUSAL"])
    configs = configs_for(name, kwargs["HEAD_DIM"])
    for i in range(_fixed_choice.get(key, 0), len(configs)):
        bq, bk, warps, stages = configs[i]
        try:
            kernel[grid](*args, **kwargs, BLOCK_Q=bq, BLOCK_K=bk, num_warps=warps, num_stages=stages)
        except OutOfResources:
            continue
        _fixed_choice[key] = i
        return
    raise RuntimeError(f"FlashAttentionTriton: no {name} config fits this GPU for {key}; add a smaller one to the list")


# ----------------------------------------------------------------------------------------------- host side


def _as_bhnd(x: Tensor) -> Tensor:
    """View ``(..., n, d)`` as ``(b, h, n, d)`` with a unit stride on ``d`` (copies only when it must)."""
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    elif x.dim() > 4:
        x = x.reshape(-1, x.shape[-3], x.shape[-2], x.shape[-1])
    if x.stride(-1) != 1:
        x = x.contiguous()
    return x


def _strides(x: Tensor) -> tuple[int, int, int]:
    return x.stride(0), x.stride(1), x.stride(2)


def _head_meta(d: int) -> dict[str, int | bool]:
    if not MIN_HEAD_DIM <= d <= MAX_HEAD_DIM:
        raise ValueError(f"FlashAttentionTriton: head dim {d} unsupported; use {MIN_HEAD_DIM}..{MAX_HEAD_DIM}")
    block_d = max(16, triton.next_power_of_2(d))
    return {"HEAD_DIM": d, "BLOCK_D": block_d, "PAD_D": block_d != d}


def _check_device(q: Tensor) -> None:
    if q.device.type != "cuda" and not interpreting():
        raise RuntimeError(
            f"FlashAttentionTriton: tensors are on {q.device}; the Triton kernels need CUDA tensors, or set "
            "TRITON_INTERPRET=1 before lmfs.kernels.flash_triton is imported to run them on the CPU"
        )


def triton_forward(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False) -> tuple[Tensor, Tensor]:
    """Forward on ``(..., n, d)``: returns ``O`` (input dtype, shape of Q) and ``L (..., n_q)`` float32."""
    _check_inputs(q, k, v, "FlashAttentionTriton")
    _check_device(q)
    if v.shape[-1] != q.shape[-1]:
        raise ValueError("FlashAttentionTriton: V's head dim must equal Q's")
    meta = _head_meta(q.shape[-1])
    q4, k4, v4 = _as_bhnd(q), _as_bhnd(k), _as_bhnd(v)
    b, h, n_q, d = q4.shape
    n_k = k4.shape[2]
    o4 = torch.empty((b, h, n_q, d), dtype=q.dtype, device=q.device)
    lse = torch.empty((b * h, n_q), dtype=torch.float32, device=q.device)
    sm_scale = 1.0 / math.sqrt(d)
    _launch(
        "fwd", lambda m: (triton.cdiv(n_q, m["BLOCK_Q"]), b * h),
        (q4, k4, v4, o4, lse, *_strides(q4), *_strides(k4), *_strides(v4), *_strides(o4),
         h, n_q, n_k, sm_scale * 1.4426950408889634),
        {"IS_CAUSAL": bool(is_causal), **meta},
    )
    return o4.reshape(q.shape), lse.reshape(q.shape[:-1])


def triton_backward(
    q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor, is_causal: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Backward on ``(..., n, d)``: returns ``dQ, dK, dV`` in the input dtype."""
    meta = _head_meta(q.shape[-1])
    q4, k4, v4, o4, g4 = (_as_bhnd(x) for x in (q, k, v, out, grad_out))
    b, h, n_q, d = q4.shape
    n_k = k4.shape[2]
    lse2 = lse.reshape(b * h, n_q).contiguous()
    delta = torch.empty_like(lse2)
    dq = torch.empty((b, h, n_q, d), dtype=q.dtype, device=q.device)
    dk = torch.empty((b, h, n_k, d), dtype=k.dtype, device=k.device)
    dv = torch.empty((b, h, n_k, d), dtype=v.dtype, device=v.device)
    sm_scale = 1.0 / math.sqrt(d)
    qk_scale = sm_scale * 1.4426950408889634
    block = 16 if interpreting() else 128
    _bwd_delta_kernel[(triton.cdiv(n_q, block), b * h)](
        o4, g4, delta, *_strides(o4), *_strides(g4), h, n_q,
        HEAD_DIM=meta["HEAD_DIM"], BLOCK_D=meta["BLOCK_D"], PAD_D=meta["PAD_D"], BLOCK_Q=block,
    )
    common = (h, n_q, n_k, qk_scale, sm_scale)
    _launch(
        "bwd_kv", lambda m: (triton.cdiv(n_k, m["BLOCK_K"]), b * h),
        (q4, k4, v4, g4, lse2, delta, dk, dv,
         *_strides(q4), *_strides(k4), *_strides(v4), *_strides(g4), *_strides(dk), *_strides(dv), *common),
        {"IS_CAUSAL": bool(is_causal), **meta},
    )
    _launch(
        "bwd_q", lambda m: (triton.cdiv(n_q, m["BLOCK_Q"]), b * h),
        (q4, k4, v4, g4, lse2, delta, dq,
         *_strides(q4), *_strides(k4), *_strides(v4), *_strides(g4), *_strides(dq), *common),
        {"IS_CAUSAL": bool(is_causal), **meta},
    )
    return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)


class FlashAttentionTriton(torch.autograd.Function):
    """``FlashAttentionTriton.apply(Q, K, V, is_causal=False) -> O`` on ``(..., seq, d)`` (e.g. ``(B, N, D)`` or
    ``(B, H, N, D)``, any strides with a contiguous last dim). Saves ``L, Q, K, V, O``; bf16/fp16/fp32; head dims
    16..128; any sequence lengths."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False) -> Tensor:  # type: ignore[override]
        out, lse = triton_forward(q, k, v, bool(is_causal))
        ctx.save_for_backward(lse, q, k, v, out)
        ctx.is_causal = bool(is_causal)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:  # type: ignore[override]
        lse, q, k, v, out = ctx.saved_tensors
        dq, dk, dv = triton_backward(q, k, v, out, lse, grad_out, ctx.is_causal)
        return dq, dk, dv, None
