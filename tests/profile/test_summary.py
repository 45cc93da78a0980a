"""The kernel-time summary on synthetic profiler events (no profiler needed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from torch.autograd import DeviceType

from lmfs.profile.summary import classify, summarize_events


@dataclass
class _Range:
    us: float

    def elapsed_us(self) -> float:
        return self.us


@dataclass
class _Event:
    name: str
    self_cpu_time_total: float = 0.0
    cpu_time_total: float = 0.0
    device_type: DeviceType = DeviceType.CPU
    cpu_parent: object = None
    time_range: _Range = field(default_factory=lambda: _Range(0.0))


def test_classify_names():
    assert classify("aten::mm") == "matmul"
    assert classify("sm90_xmma_gemm_bf16bf16_bf16f32") == "matmul"
    assert classify("_fwd_kernel") == "attention/softmax"
    assert classify("aten::_softmax") == "attention/softmax"
    assert classify("aten::add") == "other"
    assert classify("aten::exp", inside_attention=True) == "attention/softmax"


def test_cpu_summary_attributes_ops_inside_the_attention_range():
    fwd = _Event("forward", cpu_time_total=100.0)
    attn = _Event("attention", cpu_parent=fwd)
    events = [
        fwd, attn,
        _Event("aten::mm", self_cpu_time_total=60.0, cpu_parent=fwd),
        _Event("aten::exp", self_cpu_time_total=20.0, cpu_parent=attn),  # from-scratch softmax inside attention
        _Event("aten::exp", self_cpu_time_total=10.0, cpu_parent=fwd),  # an exp elsewhere
        _Event("aten::add", self_cpu_time_total=10.0, cpu_parent=fwd),
        _Event("lmfs/nn/x.py(3): f", self_cpu_time_total=999.0),  # a Python frame: ignored
        _Event("kernel", device_type=DeviceType.CUDA, time_range=_Range(500.0)),  # device event: ignored on CPU
    ]
    s = summarize_events(events, on_cuda=False, steps=2)
    shares = {c["category"]: c["share"] for c in s["categories"]}
    assert shares == pytest.approx({"matmul": 0.6, "attention/softmax": 0.2, "other": 0.2})
    assert s["total_ms_per_step"] == pytest.approx(100.0 / 1e3 / 2)
    assert s["top"][0]["name"] == "aten::mm" and s["top"][0]["calls_per_step"] == 0.5
    exp_rows = [r for r in s["top"] if r["name"] == "aten::exp"]
    assert {r["category"] for r in exp_rows} == {"attention/softmax", "other"}
    assert s["phases_ms_per_step"]["forward"] == pytest.approx(0.05)


def test_cuda_summary_uses_kernel_durations():
    events = [
        _Event("ampere_bf16_gemm", device_type=DeviceType.CUDA, time_range=_Range(30.0)),
        _Event("_fwd_kernel", device_type=DeviceType.CUDA, time_range=_Range(10.0)),
        _Event("aten::mm", self_cpu_time_total=500.0),  # host op: ignored on CUDA
    ]
    s = summarize_events(events, on_cuda=True, steps=1)
    shares = {c["category"]: c["share"] for c in s["categories"]}
    assert shares["matmul"] == pytest.approx(0.75) and shares["attention/softmax"] == pytest.approx(0.25)
    assert s["time_basis"].startswith("CUDA")
