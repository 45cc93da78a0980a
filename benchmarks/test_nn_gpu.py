"""Training throughput of a 124M Llama-shaped model on one GPU: lmfs vs Hugging Face ``LlamaForCausalLM``.

Config: d_model 768, 12 layers, 12 heads, d_ff 2048, vocab 32000, batch 16 × 1024, bf16 autocast with fp32
master weights, ``torch.compile``d, one step = forward + cross-entropy + backward + AdamW step. lmfs uses its
own AdamW (foreach) and, when lmfs.kernels' Triton FlashAttention runs, that as its ``attention_fn`` (or the
backend named by ``LMFS_NN_GPU_ATTENTION``, default ``auto``); HF uses SDPA attention and
``torch.optim.AdamW(fused=True)``. Both models start from the same weights.

extra_info: ``tokens`` and ``flops`` per round (6·N + 12·L·d·T per token, N = parameters outside the input
embedding), ``tokens_per_s`` and ``mfu`` (vs 989 TFLOP/s bf16 dense, H100/H200) from the median round, and the
card's name. Run: ``pytest benchmarks/test_nn_gpu.py -m gpu`` (skips without CUDA or transformers).
"""

from __future__ import annotations

import os
import statistics

import pytest
import torch

from lmfs.nn.presets import preset
from lmfs.scaling.accounting import kaplan_flops_per_token, param_count

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

CONFIG = preset("llama-124m")
BATCH = int(os.environ.get("LMFS_NN_GPU_BATCH", "16"))
PEAK_BF16 = 989e12
ROUNDS = int(os.environ.get("LMFS_NN_GPU_ROUNDS", "20"))


# extra_info ``attention`` as first stored: lmfs.nn's own attention and the Triton kernels (others: their label)
ATTENTION_LABEL = {"default": "lmfs-sdpa", "triton": "lmfs-flash-triton"}


def build_lmfs(device: str, attention: str = "auto"):
    """The lmfs model with ``attention``: a backend name (:mod:`lmfs.kernels.attention_backends`), or ``"auto"``: the
    Triton kernels when they can be set up, else lmfs.nn's own attention."""
    from lmfs.kernels.attention_backends import get_backend, make_attention
    from lmfs.nn import TransformerLM

    model = TransformerLM(CONFIG, device=device)
    name = "default"
    for candidate in ("triton", "default") if attention == "auto" else (attention,):
        try:
            model.set_attention_fn(make_attention(candidate))
            name = candidate
            break
        except Exception:
            if attention != "auto":
                raise
    return model, ATTENTION_LABEL.get(name) or get_backend(name).label


def build_hf(device: str, lmfs_model=None):
    transformers = pytest.importorskip("transformers")
    from lmfs.nn.llama_loader import hf_llama_config_kwargs

    cfg = transformers.LlamaConfig(**hf_llama_config_kwargs(CONFIG))
    cfg._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(cfg).to(device)
    if lmfs_model is not None:  # start from lmfs's weights (same function, same optimization problem)
        from lmfs.nn.llama_loader import to_hf_llama_state_dict

        model.load_state_dict(to_hf_llama_state_dict(lmfs_model.state_dict(), lmfs_model.config), strict=True)
    return model


def make_step(impl: str, model, ids: torch.Tensor, targets: torch.Tensor, compile: bool = True):
    """One training step (closure) for ``impl`` "lmfs" or "hf-transformers"."""
    if impl == "lmfs":
        from lmfs.nn import cross_entropy
        from lmfs.optim import AdamW

        opt = AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, foreach=True)
        forward = lambda: model(ids)
        loss_fn = cross_entropy
    else:
        import torch.nn.functional as F

        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=ids.is_cuda)
        forward = lambda: model(input_ids=ids).logits
        loss_fn = lambda logits, y: F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())

    def fwd_bwd() -> torch.Tensor:
        with torch.autocast(ids.device.type, dtype=torch.bfloat16):
            loss = loss_fn(forward(), targets)
        loss.backward()
        return loss

    compiled = torch.compile(fwd_bwd) if compile else fwd_bwd

    def step() -> torch.Tensor:
        loss = compiled()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


@pytest.fixture(scope="module")
def gpu_models():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    lmfs_model, attention = build_lmfs("cuda", os.environ.get("LMFS_NN_GPU_ATTENTION", "auto"))
    hf = build_hf("cuda", lmfs_model)
    g = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, CONFIG.vocab_size, (BATCH, CONFIG.context_length), device="cuda", generator=g)
    targets = torch.randint(0, CONFIG.vocab_size, (BATCH, CONFIG.context_length), device="cuda", generator=g)
    if attention != ATTENTION_LABEL["default"]:  # the chosen kernel must run fwd+bwd here, else use lmfs's own
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                lmfs_model(ids[:2]).float().sum().backward()
            lmfs_model.zero_grad(set_to_none=True)
        except Exception as exc:
            print(f"lmfs attention {attention} failed ({type(exc).__name__}: {exc}); falling back to lmfs's own")
            from lmfs.kernels.attention_backends import make_attention

            lmfs_model.set_attention_fn(make_attention("default"))
            lmfs_model.zero_grad(set_to_none=True)
            attention = f"{ATTENTION_LABEL['default']} (flash failed)"
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):  # same weights, same function
        a, b = lmfs_model(ids[:2]).float(), hf(input_ids=ids[:2]).logits.float()
    max_diff = (a - b).abs().max().item()
    return {"lmfs": lmfs_model, "hf-transformers": hf}, ids, targets, attention, max_diff


@pytest.mark.parametrize("impl", ["lmfs", "hf-transformers"])
def test_train_step_124m_gpu(benchmark, gpu_models, impl):
    models, ids, targets, attention, max_diff = gpu_models
    model = models[impl]
    step = make_step(impl, model, ids, targets)
    for _ in range(3):  # compile + autotune outside the timings
        step()
    torch.cuda.synchronize()

    times: list[float] = []

    def timed() -> None:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)

    counts = param_count(CONFIG)
    tokens = ids.numel()  # 6N + 12·L·d·T per token, N without the input embedding (a lookup, no FLOPs)
    flops = tokens * kaplan_flops_per_token(CONFIG, n_params=counts.total - counts.embedding)
    benchmark.group = f"nn-train-step-124m-gpu-b{BATCH}x{CONFIG.context_length}-bf16-compiled"
    benchmark.pedantic(timed, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    median = statistics.median(times)
    benchmark.extra_info.update(
        impl=impl,
        tokens=tokens,
        flops=flops,
        device=torch.cuda.get_device_name(),
        tokens_per_s=tokens / median,
        mfu=flops / median / PEAK_BF16,
        cuda_event_median_s=median,
        attention=attention if impl == "lmfs" else "sdpa",
        logits_max_abs_diff_vs_peer=max_diff,
    )
    print(
        f"\n{impl}: {tokens / median:,.0f} tok/s, MFU {flops / median / PEAK_BF16:.1%} on {torch.cuda.get_device_name()}"
    )
