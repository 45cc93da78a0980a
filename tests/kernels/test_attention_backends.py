"""The attention backends table: the only list of names, every backend that runs on this machine agrees with an
independent reference under the full seam (causal, end-aligned causal, mask, scale, grouped K/V heads), and the
ones that cannot take an argument say so."""

from __future__ import annotations

import importlib.util
import inspect
import math
import re
import subprocess
import sys

import pytest
import torch

import lmfs.kernels
from lmfs.kernels.attention_backends import (
    ANY_DEVICE,
    BACKENDS,
    CUDA,
    TRITON,
    attention_names,
    backend_with_label,
    describe,
    get_backend,
    make_attention,
)
from lmfs.nn import TransformerConfig, TransformerLM
from lmfs.nn.attention import accepts_grouped_kv

HAS_TRITON = importlib.util.find_spec("triton") is not None
INTERPRETING = not torch.cuda.is_available()  # tests/kernels/conftest.py sets TRITON_INTERPRET=1 then


def _runs_here(b) -> bool:
    if b.runs_on == ANY_DEVICE:
        return True
    if b.runs_on == TRITON:
        return HAS_TRITON
    return torch.cuda.is_available()


def _device(b) -> str:
    return "cpu" if b.runs_on == ANY_DEVICE or (b.runs_on == TRITON and INTERPRETING) else "cuda"


HERE = [pytest.param(b.name, marks=[pytest.mark.triton] if b.runs_on == TRITON else []) for b in BACKENDS
        if _runs_here(b)]
MASKED = {"default", "naive", "pytorch", "triton", "sdpa", "sdpa-math", "sdpa-efficient"}  # the rest refuse


# ------------------------------------------------------------------------------------------------- the table


def test_names_and_labels_are_unique_and_well_formed():
    names = attention_names()
    assert names == tuple(b.name for b in BACKENDS) and len(set(names)) == len(names)
    assert len({b.label for b in BACKENDS}) == len(BACKENDS)
    assert names[:4] == ("default", "naive", "pytorch", "triton")  # lmfs's own first
    for b in BACKENDS:
        assert re.fullmatch(r"[a-z][a-z0-9-]*", b.name), b.name
        assert b.runs_on in (ANY_DEVICE, CUDA, TRITON)
        assert b.description and "\n" not in b.description
        assert b.peer == b.name.startswith("sdpa")
        assert backend_with_label(b.label) is b and get_backend(b.name) is b
        assert b.name in describe()
    assert get_backend("default").label == "lmfs"


def test_unknown_names_are_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown attention backend 'cudnn'; choose one of default, naive, "):
        make_attention("cudnn")
    with pytest.raises(ValueError, match="unknown attention backend 'lmfs-triton'"):
        get_backend("lmfs-triton")  # a label is not a name
    with pytest.raises(ValueError, match="unknown attention benchmark label 'triton'"):
        backend_with_label("triton")


def test_every_backend_is_made_with_the_seam_signature():
    for b in BACKENDS:
        fn = b.make()  # nothing is launched: CUDA-only peers are made on any machine
        params = inspect.signature(fn).parameters
        assert {"is_causal", "mask", "scale"} <= set(params), b.name
        assert params["mask"].default is None and params["scale"].default is None, b.name
        assert accepts_grouped_kv(fn), b.name


def test_the_workload_offers_exactly_the_table():
    """``lmfs bench model`` / ``lmfs profile`` take their --attention through build_workload: every name builds,
    anything else fails with the table's error."""
    from lmfs.profile.sizes import parse_size
    from lmfs.profile.workload import build_workload

    size = parse_size("16,32,1,2")[1]  # d_model, d_ff, layers, heads
    for name in attention_names():
        work = build_workload(size, 8, attention=name, batch_size=1)
        assert work.model.layers[0].attn.attention_fn.__wrapped__.__name__ == make_attention(name).__name__
    with pytest.raises(ValueError, match="unknown attention backend 'flash'; choose one of " + ", ".join(attention_names())):
        build_workload(size, 8, attention="flash", batch_size=1)


def test_importing_the_table_needs_no_torch():
    """A CLI builds its --attention choices from attention_names() without importing torch."""
    code = "import sys; from lmfs.kernels import attention_names; attention_names(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_package_docstring_names_only_things_that_exist():
    refs = re.findall(r":(?:func|class|mod):`~?([\w.]+)`", lmfs.kernels.__doc__ or "")
    assert refs
    for ref in refs:
        module, _, attr = ref.rpartition(".")
        try:
            importlib.import_module(ref)
            continue
        except ImportError:
            pass
        assert hasattr(importlib.import_module(module), attr), ref


# ------------------------------------------------------------------------------------ the seam, on each backend


def _reference(q, k, v, is_causal=False, mask=None, scale=None):
    """softmax(q·kᵀ·scale, masked) v in plain torch, K/V heads repeated, an explicit end-aligned causal mask."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    n_q, n_k = q.shape[-2], k.shape[-2]
    allowed = torch.ones(n_q, n_k, dtype=torch.bool)
    if is_causal:
        allowed = allowed.tril(n_k - n_q)
    if mask is not None:
        allowed = allowed & mask.cpu()
    s = (q @ k.transpose(-1, -2)) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    return torch.softmax(s.masked_fill(~allowed, float("-inf")), dim=-1) @ v


def _f64(*xs):
    return [x.detach().double().cpu() for x in xs]


CASES = {
    # name: (heads, kv_heads, n_q, n_k, is_causal, mask kind, scale)
    "causal": (4, 4, 19, 19, True, None, None),
    "full": (4, 4, 19, 19, False, None, None),
    "end-aligned-causal": (4, 4, 5, 21, True, None, None),
    "mask-2d": (4, 4, 6, 23, False, "2d", None),
    "mask-per-head-and-causal": (4, 2, 17, 17, True, "4d", None),
    "scale": (4, 4, 19, 19, True, None, 0.37),
    "gqa": (4, 2, 19, 19, True, None, None),
    "mqa-mask-scale": (4, 1, 3, 20, False, "2d", 0.2),
}


def _inputs(case: str, device: str, seed: int = 0):
    heads, kv_heads, n_q, n_k, is_causal, mask_kind, scale = CASES[case]
    gen = torch.Generator().manual_seed(seed)
    b, d = 2, 16
    q = torch.randn(b, heads, n_q, d, generator=gen)
    k, v = (torch.randn(b, kv_heads, n_k, d, generator=gen) for _ in range(2))
    mask = None
    if mask_kind is not None:
        shape = (n_q, n_k) if mask_kind == "2d" else (b, heads, n_q, n_k)
        mask = torch.rand(shape, generator=gen) < 0.6
        # every query keeps its own (end-aligned) position: no empty row, even with the causal part
        mask |= torch.arange(n_k)[None, :] - torch.arange(n_q)[:, None] == n_k - n_q
        mask = mask.to(device)
    q, k, v = (x.to(device) for x in (q, k, v))
    return q, k, v, dict(is_causal=is_causal, mask=mask, scale=scale)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", HERE)
def test_backend_matches_the_reference(name, case):
    backend = get_backend(name)
    q, k, v, kw = _inputs(case, _device(backend))
    fn = backend.make()
    if kw["mask"] is not None and name not in MASKED:
        pytest.skip(f"{name} takes no mask")
    out = fn(q, k, v, **kw)
    assert out.shape == q.shape and out.dtype == q.dtype
    tol = 2e-3 if out.is_cuda else 1e-5
    torch.testing.assert_close(out.double().cpu(), _reference(*_f64(q, k, v), **kw), rtol=tol, atol=tol)


@pytest.mark.parametrize("case", ["causal", "mask-per-head-and-causal", "gqa"])
@pytest.mark.parametrize("name", HERE)
def test_backend_gradients_match_the_reference(name, case):
    backend = get_backend(name)
    q, k, v, kw = _inputs(case, _device(backend), seed=1)
    if kw["mask"] is not None and name not in MASKED:
        pytest.skip(f"{name} takes no mask")
    leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v)]
    g = torch.randn(q.shape, generator=torch.Generator().manual_seed(2)).to(q.device)
    backend.make()(*leaves, **kw).backward(g)
    ref_leaves = [x.requires_grad_(True) for x in _f64(q, k, v)]
    _reference(*ref_leaves, **kw).backward(g.double().cpu())
    tol = 2e-3 if q.is_cuda else 1e-5
    for mine, ref in zip(leaves, ref_leaves, strict=True):
        torch.testing.assert_close(mine.grad.double().cpu(), ref.grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", [b.name for b in BACKENDS if b.name not in MASKED])
def test_fused_sdpa_peers_refuse_a_mask_by_name(name):
    q, k, v, kw = _inputs("mask-2d", "cpu")
    with pytest.raises(ValueError, match=f"attention backend '{name}' takes no mask"):
        make_attention(name)(q, k, v, **kw)
    with pytest.raises(ValueError, match=f"attention backend '{name}' takes no mask"):  # needs an explicit one
        make_attention(name)(*_inputs("end-aligned-causal", "cpu")[:3], is_causal=True)


@pytest.mark.parametrize("name", ["default", "naive", "pytorch", "sdpa"])
def test_a_non_bool_mask_is_refused(name):
    q, k, v, _ = _inputs("full", "cpu")
    with pytest.raises(TypeError, match="bool"):
        make_attention(name)(q, k, v, is_causal=False, mask=torch.ones(19, 19))


# ------------------------------------------------------------------------------ in the model, cached decoding


@pytest.mark.parametrize("kv_heads", [4, 2])
@pytest.mark.parametrize("name", HERE)
def test_cached_decoding_through_each_backend_equals_the_full_forward(name, kv_heads):
    backend = get_backend(name)
    device = _device(backend)
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=61, context_length=24, d_model=64, num_layers=2, num_heads=4,
                            num_kv_heads=kv_heads, d_ff=96)
    model = TransformerLM(cfg, device=device).eval()
    model.set_attention_fn(backend.make())
    ids = torch.randint(0, 61, (2, 20), generator=torch.Generator().manual_seed(3)).to(device)
    with torch.no_grad():
        full = model(ids)
        cache = model.new_kv_cache(batch_size=2)
        parts = [model(ids[:, a:b], kv_cache=cache) for a, b in [(0, 7), (7, 8), (8, 9), (9, 16), (16, 20)]]
    tol = 2e-3 if device == "cuda" else 1e-4
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=tol, atol=tol)
