"""`lmfs profile` and `lmfs bench model` on a tiny model on the CPU, and the report sections reading their output."""

from __future__ import annotations

import json

import pytest

from lmfs.cli import main


@pytest.fixture()
def reports(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFS_REPORTS_DIR", str(tmp_path / "reports"))
    return tmp_path / "reports"


def test_profile_writes_trace_and_summary_the_report_shows(tmp_path, reports, capsys):
    out = tmp_path / "trace"
    rc = main(["profile", "--size", "tiny", "--context", "16", "--batch", "2", "--active", "1", "--no-stack",
               "--tag", "t", "--out", str(out)])
    assert rc == 0
    traces = list((out / "plugins" / "profile").glob("t*.pt.trace.json"))
    assert len(traces) == 1
    trace = json.loads(traces[0].read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"forward", "backward", "optimizer"} <= names, "phase ranges missing from the trace"
    # by default the summary goes to the ignored reports/local/, not to the committed reports/data/
    assert not (reports / "data").exists()
    summary = json.loads((reports / "local" / "profile" / "t.json").read_text())
    assert summary["threads"] >= 1 and summary["machine_id"] and "commit" in summary
    assert sum(c["share"] for c in summary["categories"]) == pytest.approx(1.0)
    matmul = next(c for c in summary["categories"] if c["category"] == "matmul")
    assert matmul["share"] > 0.0
    assert summary["peak_memory_mib"] is None and summary["memory_snapshot"] is None  # CPU: CUDA parts skipped
    mem = summary["profiler_memory"]  # the profiler's CPU allocator events, on every device
    assert mem["device"] == "cpu" and mem["peak_mib"] > 0 and summary["activation_checkpointing"] == 0
    assert set(mem["phase_peak_mib"]) == {"forward", "backward", "optimizer"}
    assert max(mem["phase_peak_mib"].values()) == pytest.approx(mem["peak_mib"])
    assert (reports / "local" / "profile" / "t_top.csv").read_text().startswith("name,category")
    assert "ms per step" in capsys.readouterr().out

    from lmfs.profile.report import section

    sec = section(reports)
    assert sec is not None and "matmul" in sec.html and "attention/softmax" in sec.html
    assert "Local runs" in sec.html and "Numbers from reports/local/profile/t.json" in sec.html


def test_profile_with_activation_checkpointing(tmp_path, reports, capsys):
    rc = main(["profile", "--size", "tiny", "--context", "16", "--batch", "2", "--active", "1", "--no-stack",
               "--activation-checkpointing", "1", "--out", str(tmp_path / "trace")])
    assert rc == 0
    (path,) = (reports / "local" / "profile").glob("*.json")
    assert path.stem.endswith("-ckpt1")
    summary = json.loads(path.read_text())
    assert summary["activation_checkpointing"] == 1 and summary["profiler_memory"]["peak_mib"] > 0
    assert "profiler peak memory over a step (cpu" in capsys.readouterr().out

    from lmfs.profile.report import section

    sec = section(reports)
    assert "profiler peak memory over one step" in sec.html and "activation checkpointing every 1" in sec.html

    assert main(["profile", "--size", "tiny", "--activation-checkpointing", "-1"]) == 2
    assert "--activation-checkpointing must be" in capsys.readouterr().err


def test_bench_model_appends_records(tmp_path, reports):
    out = tmp_path / "bench.jsonl"
    for _ in range(2):
        assert main(["bench", "model", "--size", "tiny", "--context", "16", "--batch", "2", "--mode", "forward",
                     "step", "--warmup", "0", "--steps", "2", "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 4
    assert {r["mode"] for r in records} == {"forward", "step"}
    assert all(r["mean_s"] > 0 and r["steps"] == 2 for r in records)
    assert all(r["threads"] >= 1 and r["machine_id"] and "commit" in r for r in records)


def test_bench_model_default_output_is_ignored_local_data(reports):
    assert main(["bench", "model", "--size", "tiny", "--context", "8", "--batch", "1", "--mode", "forward",
                 "--warmup", "0", "--steps", "1"]) == 0
    assert (reports / "local" / "profile" / "model_bench.jsonl").is_file()
    assert not (reports / "data").exists()


@pytest.mark.parametrize("cmd", [["profile"], ["bench", "model"]])
def test_unknown_size_is_an_error_listing_the_sizes(cmd, reports, capsys):
    assert main([*cmd, "--size", "huge"]) == 2
    err = capsys.readouterr().err
    assert "unknown model size 'huge'" in err and "tiny" in err and "2.7B" in err and "Traceback" not in err


def test_profile_rejects_cuda_without_cuda(tmp_path, reports, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    for cmd in (["profile"], ["bench", "model"]):
        assert main([*cmd, "--size", "tiny", "--context", "8", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_report_sections_return_none_without_data(tmp_path):
    from lmfs.kernels.report import section as kernels_section
    from lmfs.profile.report import section as profile_section

    assert profile_section(tmp_path) is None
    kernels = kernels_section(tmp_path)  # the README promises this section: it says plainly that there is no run
    assert kernels is not None and "No GPU run stored" in kernels.html


def test_kernels_section_shows_stored_gpu_results(tmp_path):
    from lmfs.kernels.report import section

    bench = []
    for impl, ms in (("lmfs-triton", 4.0), ("torch-sdpa-cudnn", 4.5)):
        bench.append({"group": "attention-leaderboard-16x16384x64-causal-bf16", "fullname": impl, "stats": {"median": ms},
                      "extra_info": {"do_bench_ms": ms, "tflops": 1.92e12 / (ms * 1e-3) / 1e12, "attn_impl": impl,
                                     "device": "NVIDIA H100"}})
        for n in (128, 256):
            bench.append({"group": f"attention-gpu-fwd-512x{n}x64-causal-bf16", "fullname": f"{impl}{n}",
                          "stats": {"median": 1.0},
                          "extra_info": {"do_bench_ms": 0.1, "tflops": 100.0 + n, "attn_impl": impl, "mode": "fwd",
                                         "shape": [512, n, 64], "device": "NVIDIA H100"}})
    (tmp_path / "bench" / "m").mkdir(parents=True)
    (tmp_path / "bench" / "m" / "abc.json").write_text(json.dumps({"benchmarks": bench}))
    sec = section(tmp_path)
    assert sec is not None and "lmfs-triton" in sec.html and "<svg" in sec.html and "Leaderboard" in sec.html
