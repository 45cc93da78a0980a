"""The pipeline end to end on a small synthetic crawl + the real CC sample: the funnel adds up, the steps hit
their ground-truth targets, outputs are deterministic across executors' process counts, a failed shard is
named and resumed alone, a killed run resumes to the same bytes, bad input is counted or refused clearly."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.data.conftest import pipeline_config

pytest.importorskip("fasttext")
pytest.importorskip("profanity_check")


#: the default steps less the two model-based filters whose imports dominate a worker's start-up
CHEAP_STEPS = [{"type": t} for t in ("extract", "language", "pii", "gopher", "minhash", "line_dedup")]


@pytest.fixture(scope="module")
def reference_run(small_crawl, tmp_path_factory):
    from lmfs.data.pipeline import run_pipeline

    cfg = pipeline_config(small_crawl, tmp_path_factory.mktemp("ref") / "run")
    return cfg, run_pipeline(cfg, progress=False)


@pytest.fixture(scope="module")
def cheap_reference(small_crawl, tmp_path_factory):
    from lmfs.data.pipeline import run_pipeline

    cfg = pipeline_config(small_crawl, tmp_path_factory.mktemp("cheap") / "run", steps=CHEAP_STEPS)
    return cfg, run_pipeline(cfg, progress=False)


def test_funnel_adds_up_and_steps_hit_their_targets(reference_run, small_crawl):
    from lmfs.data.evaluate import step_precision_recall
    from lmfs.data.synth import load_truth

    cfg, summary = reference_run
    steps = summary["steps"]
    assert [s["name"] for s in steps][:3] == ["read", "extract", "language"]
    for prev, cur in itertools.pairwise(steps):
        assert cur["in_docs"] == prev["out_docs"], (prev["name"], cur["name"])
    for s in steps:
        assert s["in_docs"] - s["out_docs"] == sum(s["dropped"].values()), s["name"]
    assert steps[0]["out_docs"] == 90 + 16
    out_docs = sum(1 for p in Path(cfg.output_dir, "output").iterdir() for _ in gzip.open(p))
    assert out_docs == summary["documents_out"] == steps[-1]["out_docs"]
    ev = step_precision_recall(summary, load_truth(small_crawl["truth"]))
    rows = {r["step"]: r for r in ev["steps"] if r.get("target")}
    assert rows["language"]["recall"] >= 0.9 and rows["language"]["precision"] >= 0.8  # ~8 pages: one slip = 0.86
    assert rows["extract"]["recall"] == 1.0
    assert rows["minhash"]["precision"] >= 0.9 and rows["minhash"]["recall"] >= 0.8
    assert ev["gopher+quality"]["recall"] >= 0.9
    assert ev["overall"]["precision"] >= 0.9 and ev["overall"]["recall"] >= 0.8
    # PII was masked and counted
    pii = next(s for s in steps if s["name"] == "pii")
    assert pii["counters"].get("masked_emails", 0) >= 1
    text = "".join(gzip.open(p, "rt").read() for p in Path(cfg.output_dir, "output").iterdir())
    assert "|||EMAIL_ADDRESS|||" in text and "@example.com" not in text
    # examples of what was removed are kept for the report
    assert any(s["examples"] for s in steps)


def test_process_pool_gives_identical_bytes(cheap_reference, small_crawl, tmp_path):
    from lmfs.data.pipeline import run_pipeline

    _, ref = cheap_reference
    cfg = pipeline_config(small_crawl, tmp_path / "run", executor={"kind": "local", "workers": 2},
                          steps=CHEAP_STEPS)
    assert run_pipeline(cfg, progress=False)["manifest"] == ref["manifest"]


def test_failed_shard_is_named_and_only_it_reruns(reference_run, small_crawl, tmp_path, monkeypatch):
    from lmfs.data import steps as steps_mod
    from lmfs.data.pipeline import PipelineError, marker_path, run_pipeline

    _, ref = reference_run
    cfg = pipeline_config(small_crawl, tmp_path / "run")
    bad_shard = small_crawl["shards"][1]
    original = steps_mod.Gopher.keep

    def failing(self, doc, stats):
        if doc.id.startswith(Path(bad_shard).name + "/") and doc.id.endswith("/5"):
            raise RuntimeError("disk on fire")
        return original(self, doc, stats)

    monkeypatch.setattr(steps_mod.Gopher, "keep", failing)
    with pytest.raises(PipelineError, match=r"crawl-00001\.warc\.gz: RuntimeError: disk on fire.*rerun"):
        run_pipeline(cfg, progress=False)
    done = {s: marker_path(cfg, 0, s).is_file() for s in cfg.inputs}
    assert not done[bad_shard] and sum(done.values()) == len(cfg.inputs) - 1
    assert not any(Path(cfg.output_dir, "work", "stage0").glob(".*tmp*")), "a half-written file was left"
    mtimes = {s: marker_path(cfg, 0, s).stat().st_mtime_ns for s in cfg.inputs if done[s]}
    monkeypatch.setattr(steps_mod.Gopher, "keep", original)
    summary = run_pipeline(cfg, progress=False)
    assert summary["manifest"] == ref["manifest"]
    assert all(marker_path(cfg, 0, s).stat().st_mtime_ns == t for s, t in mtimes.items()), "finished shards redone"


def test_killed_run_resumes_to_identical_output(cheap_reference, small_crawl, tmp_path):
    """SIGKILL the CLI once the first shard of stage 1 is done; the rerun finishes the rest, same bytes."""
    _, ref = cheap_reference
    cfg = {"inputs": [*small_crawl["shards"], small_crawl["cc"]], "output_dir": str(tmp_path / "run")}
    lines = [f"inputs = {json.dumps(cfg['inputs'])}", f"output_dir = {json.dumps(cfg['output_dir'])}",
             *[f'[[steps]]\ntype = "{s["type"]}"' for s in CHEAP_STEPS],
             "[executor]", 'kind = "local"', "workers = 1"]
    conf = tmp_path / "run.toml"
    conf.write_text("\n".join(lines) + "\n")
    cmd = [sys.executable, "-m", "lmfs", "data", "run", str(conf), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage0 = tmp_path / "run" / "work" / "stage0"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(stage0.glob("*.done.json")):
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert killed, "the run finished before it could be killed"
    assert len(list(stage0.glob("*.done.json"))) < len(cfg["inputs"])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest == ref["manifest"]


def test_changed_config_in_same_dir_is_refused(reference_run, small_crawl):
    from lmfs.data.pipeline import PipelineError, run_pipeline

    cfg, _ = reference_run
    other = pipeline_config(small_crawl, cfg.output_dir, steps=[{"type": "extract"}])
    with pytest.raises(PipelineError, match="different config"):
        run_pipeline(other, progress=False)


def test_parquet_output_and_tokens(small_crawl, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from lmfs.data.pipeline import _tokenizer, run_pipeline
    from lmfs.paths import has_shared_data

    if not has_shared_data("tokenizers", "gpt2_encoder.json"):
        pytest.skip("GPT-2 tokenizer files not found")
    cfg = pipeline_config(
        {**small_crawl, "shards": small_crawl["shards"][:1]}, tmp_path / "run", output_format="parquet",
        steps=[{"type": "extract"}, {"type": "language"}, {"type": "gopher"}], tokenize={"tokenizer": "gpt2"},
    )
    summary = run_pipeline(cfg, progress=False)
    [out] = Path(cfg.output_dir, "output").glob("crawl-*.parquet")
    table = pq.read_table(out)
    [shard] = [x for x in summary["shards"] if x["shard"].startswith("crawl-")]
    assert table.num_rows == shard["documents"] > 0
    tokens = np.load(Path(cfg.output_dir) / "tokens.npy")
    tok = _tokenizer({"tokenizer": "gpt2"})
    first = table.column("text")[0].as_py()
    assert tok.decode(tokens[: len(tok.encode(first))].tolist()) == first
    assert int((tokens == 50256).sum()) == summary["documents_out"]


def _warc(records: list[tuple[str, bytes, str]]) -> bytes:
    out = b""
    for url, body, ctype in records:
        http = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n\r\n".encode() + body
        head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: {url}\r\n"
                f"WARC-Record-ID: <urn:uuid:{abs(hash(url))}>\r\nContent-Type: application/http; msgtype=response\r\n"
                f"Content-Length: {len(http)}\r\n\r\n").encode()
        out += gzip.compress(head + http + b"\r\n\r\n", mtime=0)
    return out


def test_bad_input_is_counted_or_refused(tmp_path, cc_sample):
    from lmfs.data.pipeline import PipelineError, load_config, run_pipeline

    good_page = b"<html><body>" + b"<p>The river rises in the hills and runs south to the sea.</p>" * 20 + b"</body></html>"
    mixed = _warc([
        ("http://a/empty", b"", "text/html"),
        ("http://a/binary", b"\x00\x01\x02PNG" * 100, "text/html"),
        ("http://a/image", b"GIF89a....", "image/gif"),
        ("http://a/huge", b"<div>" * (4 << 20), "text/html"),  # 20 MB of one tag
        ("http://a/misdeclared", '<meta charset="utf-8"><p>Grüße aus Köln</p>'.encode("cp1252") * 30, "text/html"),
        ("http://a/good", good_page, "text/html"),
    ])
    (tmp_path / "mixed.warc.gz").write_bytes(mixed)
    full = (tmp_path / "mixed.warc.gz").read_bytes()
    (tmp_path / "truncated.warc.gz").write_bytes(full[: len(full) - 40])
    (tmp_path / "docs.jsonl").write_text('{"text": ""}\nnot json\n{"text": 5}\n{"id": "x", "text": "hello"}\n')
    with gzip.open(tmp_path / "bomb.jsonl.gz", "wb") as f:
        for _ in range(64):
            f.write(b" " * (1 << 20))
    base = {"inputs": [str(tmp_path / n) for n in ("mixed.warc.gz", "truncated.warc.gz", "docs.jsonl")],
            "output_dir": str(tmp_path / "run"), "executor": {"kind": "local", "workers": 1},
            "steps": [{"type": "extract"}, {"type": "min_length", "min_chars": 1}]}
    summary = run_pipeline(load_config(base), progress=False)
    steps = {s["name"]: s for s in summary["steps"]}
    assert steps["read"]["dropped"] == {"not_html": 2, "record_too_large": 2, "truncated_input": 1, "bad_json": 2}
    assert steps["extract"]["dropped"] == {"binary": 2, "empty": 1, "no_text": 2}
    out = [json.loads(x) for p in sorted(Path(tmp_path / "run" / "output").iterdir()) for x in gzip.open(p)]
    texts = [d["text"] for d in out]
    assert any("Köln" in t or "K\ufffdln" in t or "Kln" in t for t in texts)  # decoded, not lost
    assert sum("river rises" in t for t in texts) == 1  # the truncated copy lost its last (good) record
    bomb = {**base, "inputs": [str(tmp_path / "bomb.jsonl.gz")], "output_dir": str(tmp_path / "run2"),
            "limits": {"max_decompressed_bytes": 8 << 20}}
    with pytest.raises(PipelineError, match=r"bomb\.jsonl\.gz.*InputTooLarge"):
        run_pipeline(load_config(bomb), progress=False)
    assert not list((tmp_path / "run2" / "output").glob("*")) if (tmp_path / "run2" / "output").exists() else True


def test_config_errors_are_clear(tmp_path, small_crawl):
    from lmfs.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text(f'inputs = ["{small_crawl["shards"][0]}"]\noutput_dir = "x"\n[[steps]]\ntype = "sparkle"\n')
    with pytest.raises(ValueError, match="unknown step type 'sparkle'"):
        from lmfs.data.pipeline import load_config

        load_config(bad)
    assert main(["data", "run", str(bad)]) == 2
    missing = tmp_path / "missing.toml"
    missing.write_text('inputs = ["nothing-*.warc.gz"]\noutput_dir = "x"\n')
    assert main(["data", "run", str(missing)]) == 2
