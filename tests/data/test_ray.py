"""The Ray executor on one local cluster for the module (``num_cpus=2``): the same bytes as the local executor,
and a failing shard reported by name like the local executor does."""

from __future__ import annotations

import pytest

from tests.data.conftest import pipeline_config

ray = pytest.importorskip("ray")
pytest.importorskip("fasttext")

STEPS = [{"type": t} for t in ("extract", "language", "pii", "gopher", "minhash", "line_dedup")]


@pytest.fixture(scope="module")
def cluster():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_ray_and_local_outputs_are_byte_identical(cluster, small_crawl, tmp_path):
    from lmfs.data.pipeline import run_pipeline

    local = run_pipeline(pipeline_config(small_crawl, tmp_path / "local", steps=STEPS), progress=False)
    cfg = pipeline_config(small_crawl, tmp_path / "ray", steps=STEPS, executor={"kind": "ray", "workers": 2})
    remote = run_pipeline(cfg, progress=False)
    assert remote["manifest"] == local["manifest"] and len(local["manifest"]) == 4
    assert [s["out_docs"] for s in remote["steps"]] == [s["out_docs"] for s in local["steps"]]


def test_ray_reports_a_failed_shard(cluster, small_crawl, tmp_path):
    from lmfs.data.pipeline import PipelineError, run_pipeline

    missing = tmp_path / "gone.warc.gz"
    missing.write_bytes(b"")
    cfg = pipeline_config({**small_crawl, "shards": [str(missing)]}, tmp_path / "ray", steps=STEPS,
                          executor={"kind": "ray"})
    missing.unlink()
    with pytest.raises(PipelineError, match=r"gone\.warc\.gz: FileNotFoundError"):
        run_pipeline(cfg, progress=False)
