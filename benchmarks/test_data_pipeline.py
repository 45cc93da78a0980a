"""The whole filtering pipeline on 2 workers: lmfs local executor vs lmfs on Ray vs datatrove's
LocalPipelineExecutor running its own equivalent steps, on the same synthetic crawl (2,000 pages, 4 WARC shards).

Steps, both sides: WARC reading → HTML extraction (Resiliparse in both; datatrove has no Resiliparse extractor,
so a ``BaseExtractor`` subclass wraps it, inside datatrove's own extraction sandbox) → fastText lid.176 English
filter (datatrove's ``LanguageFilter``, pointed at the same ``lid.176.ftz`` file instead of downloading, its
fastText call patched for numpy 2) → PII masking (``PIIFormatter``) → Gopher rules (``GopherQualityFilter``)
→ MinHash near-dedup (datatrove: the four stages signature / buckets / cluster / filter, 14 buckets × 8 hashes
as its defaults, 5-grams; lmfs: 128 hashes, 16 bands, 5-grams, Jaccard-verified) → JSONL output.

``extra_info``: docs/s (input pages / wall second), documents out. Peak memory: ``test_peak_memory_by_shard_size``
runs lmfs in a subprocess on 4 and on 16 shards of the same size and records each worker's peak RSS.

Target: lmfs local ≥ 1.0× datatrove's docs/s. All of these are ``slow`` (tens of seconds each).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmfs.paths import has_shared_data

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not has_shared_data("corpus", "gutenberg_train.txt"), reason="needs ../shared")]

STEPS = [{"type": "extract"}, {"type": "language", "languages": ["en"], "min_score": 0.65}, {"type": "pii"},
         {"type": "gopher"}, {"type": "minhash", "num_hashes": 128, "num_bands": 16, "ngrams": 5}]
N_DOCS, N_SHARDS = 2000, 4


def _patch_datatrove() -> None:
    """datatrove's LID downloads lid.176.bin and calls fastText's numpy-1-only wrapper: point it at the local
    lid.176.ftz and call the model the numpy-2-safe way. Runs on import, so forkserver workers get it too."""
    try:
        import datatrove.utils.lid as lid
    except ImportError:
        return
    from lmfs.data.langid import lid_model_path

    lid.cached_asset_path_or_download = lambda *a, **k: str(lid_model_path())

    def predict(self, doc):
        out = self.model.f.predict(doc.text.replace("\n", " ") + "\n", self.k, 0.0, "replace")
        pairs = {label.split("__")[2]: min(1.0, float(p)) for p, label in out}
        best = max(pairs.items(), key=lambda x: x[1])
        return best, ({lang: pairs.get(lang, 0.0) for lang in self.languages} if self.languages else pairs)

    lid.FastTextLID.predict = predict

    def model(self):  # its loader also asks for the "fasttext-numpy2-wheel" distribution by name
        if self._model is None:
            from lmfs.data.fasttext_util import load_model

            self._model = load_model(lid_model_path())
        return self._model

    lid.FastTextLID.model = property(model)
    from datatrove.pipeline.filters.language_filter import LanguageFilter

    # it asks for the distribution "fasttext-numpy2-wheel"; "fasttext-numpy2" gives the same module here
    LanguageFilter._requires_dependencies = ["fasttext", "fasteners"]


_patch_datatrove()

try:
    from datatrove.pipeline.extractors.base import BaseExtractor

    class ResiliparseExtractor(BaseExtractor):
        name = "resiliparse"

        def __init__(self, timeout: float = 1):
            super().__init__(timeout)

        def extract(self, text: str) -> str:
            from resiliparse.extract.html2text import extract_plain_text

            return extract_plain_text(text)
except ImportError:  # pragma: no cover
    ResiliparseExtractor = None  # type: ignore[assignment,misc]


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    pytest.importorskip("fastwarc")
    from lmfs.data.synth import generate_crawl

    out = tmp_path_factory.mktemp("bench-crawl")
    generate_crawl(out, num_docs=N_DOCS, num_shards=N_SHARDS, seed=21)
    return out


def _lmfs(crawl: Path, out: Path, kind: str) -> int:
    from lmfs.data.pipeline import load_config, run_pipeline

    cfg = load_config({"inputs": [str(crawl / "*.warc.gz")], "output_dir": str(out), "steps": STEPS,
                       "executor": {"kind": kind, "workers": 2}})
    return run_pipeline(cfg, progress=False)["documents_out"]


def _datatrove(crawl: Path, out: Path) -> int:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import GopherQualityFilter, LanguageFilter
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    cfg = MinhashConfig(n_grams=5)
    kw = {"logging_dir": None, "workers": 2}
    LocalPipelineExecutor(pipeline=[
        WarcReader(str(crawl), glob_pattern="*.warc.gz"), ResiliparseExtractor(), LanguageFilter(languages=["en"]),
        PIIFormatter(), GopherQualityFilter(), JsonlWriter(str(out / "filtered")),
        MinhashDedupSignature(output_folder=str(out / "sigs"), config=cfg),
    ], tasks=N_SHARDS, **{**kw, "logging_dir": str(out / "log1")}).run()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(str(out / "sigs"), str(out / "buckets"), config=cfg)],
                          tasks=cfg.num_buckets, **{**kw, "logging_dir": str(out / "log2")}).run()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(str(out / "buckets"), str(out / "remove"), config=cfg)],
                          tasks=1, **{**kw, "logging_dir": str(out / "log3"), "workers": 1}).run()
    LocalPipelineExecutor(pipeline=[
        JsonlReader(str(out / "filtered")), MinhashDedupFilter(str(out / "remove")), JsonlWriter(str(out / "final")),
    ], tasks=N_SHARDS, **{**kw, "logging_dir": str(out / "log4")}).run()
    import gzip

    return sum(1 for p in (out / "final").glob("*.gz") for _ in gzip.open(p))


@pytest.mark.parametrize("impl", ["lmfs", "lmfs-ray", "datatrove"])
def test_pipeline_throughput(benchmark, impl, crawl, tmp_path):
    if impl == "datatrove":
        pytest.importorskip("datatrove")
        pytest.importorskip("spacy")
    if impl == "lmfs-ray":
        ray = pytest.importorskip("ray")
        if not ray.is_initialized():
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs = iter(range(100))

    def run():
        out = tmp_path / f"run{next(runs)}"
        if impl == "datatrove":
            return _datatrove(crawl, out)
        return _lmfs(crawl, out, "ray" if impl == "lmfs-ray" else "local")

    benchmark.group = "data-pipeline-2-workers"
    t0 = time.perf_counter()
    docs_out = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(impl=impl, documents=N_DOCS, docs_out=docs_out,
                                docs_per_s=round(N_DOCS / benchmark.stats.stats.median, 1),
                                wall_s=round(time.perf_counter() - t0, 1))
    assert docs_out > 0


_MEM_SCRIPT = """
import json, resource, sys
from lmfs.data.synth import generate_crawl
from lmfs.data.pipeline import load_config, run_pipeline
crawl, out, n_shards = sys.argv[1], sys.argv[2], int(sys.argv[3])
generate_crawl(crawl, num_docs=250 * n_shards, num_shards=n_shards, seed=5)
cfg = load_config({"inputs": [crawl + "/*.warc.gz"], "output_dir": out, "steps": json.loads(sys.argv[4]),
                   "executor": {"kind": "local", "workers": 2, "start_method": "fork"}})
run_pipeline(cfg, progress=False)
print(json.dumps({"children_max_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def test_peak_memory_by_shard_size(benchmark, tmp_path):
    """The same shard size (250 pages), 4x the corpus: the workers' peak RSS stays the same."""
    results = {}

    def run():
        for n in (4, 16):
            proc = subprocess.run([sys.executable, "-c", _MEM_SCRIPT, str(tmp_path / f"c{n}"), str(tmp_path / f"o{n}"),
                                   str(n), json.dumps(STEPS)], capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, proc.stderr[-2000:]
            results[n] = json.loads(proc.stdout.strip().splitlines()[-1])["children_max_rss_mb"]
        return results

    benchmark.group = "data-pipeline-memory"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(impl="lmfs", worker_peak_rss_mb_4_shards=round(results[4], 1),
                                worker_peak_rss_mb_16_shards=round(results[16], 1))
    assert results[16] < 1.3 * results[4], results
