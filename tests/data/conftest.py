"""Shared fixtures of the data tests: one small synthetic crawl per session, the real CC sample path."""

from __future__ import annotations

import pytest

from lmfs.paths import has_shared_data, shared_data


@pytest.fixture(scope="session")
def cc_sample():
    if not has_shared_data("web", "cc_sample_16pages.warc.gz"):
        pytest.skip("shared web sample not found (set LMFS_SHARED_DIR)")
    return str(shared_data("web", "cc_sample_16pages.warc.gz"))


@pytest.fixture(scope="session")
def small_crawl(tmp_path_factory, cc_sample):
    pytest.importorskip("fastwarc")
    from lmfs.data.synth import generate_crawl

    out = tmp_path_factory.mktemp("crawl")
    paths = generate_crawl(out, num_docs=90, num_shards=3, seed=7)
    return {"dir": out, "shards": [str(p) for p in paths], "truth": out / "truth.jsonl", "cc": cc_sample}


def pipeline_config(crawl, out_dir, **overrides):
    from lmfs.data.pipeline import load_config

    raw = {"inputs": [*crawl["shards"], crawl["cc"]], "output_dir": str(out_dir),
           "executor": {"kind": "local", "workers": 1}}
    raw.update(overrides)
    return load_config(raw)
