"""The resumable, per-shard filtering pipeline behind ``lmfs data run CONFIG.toml``.

A run is a list of steps (:mod:`lmfs.data.steps`) applied to every input shard. The plan cuts the list at its
global steps into **stages**: stage 0 reads the raw shard and runs the map steps up to the first global step,
whose ``collect`` writes a per-shard partial; the global ``combine`` runs once; the next stage starts with that
step's ``apply``; the last stage writes the output shard (JSONL.gz or Parquet) and, optionally, its tokens.

Every unit of work — ``(stage, shard)`` and each stage's ``combine`` — is a pure function of the config and the
files on disk (:func:`run_shard_task`, :func:`run_combine_task`), so any executor can run it (local processes,
Ray tasks). Each writes its outputs atomically and then a completion marker (``*.done.json`` holding its stats);
a rerun skips every unit whose marker exists, so a killed run redoes only unfinished shards, and its final
output is byte-identical to an uninterrupted run (gzip without timestamps, documents in input order, global
decisions keyed by stable document ids). A shard that raises is reported with its name and error after the
other shards of its stage finished; its marker is missing, so the next run retries it.

Layout of ``output_dir``: ``run.json`` (config fingerprint), ``work/stage<k>/`` (intermediate shards, partials,
markers), ``output/<shard>.jsonl.gz`` (or ``.parquet``), ``tokens.npy`` (with ``[tokenize]``),
``summary.json`` (the funnel: documents and bytes after each step, drops by reason with examples, per-shard
stats) and ``manifest.json`` (sha256 of every output file).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

from lmfs.atomic import atomic_open, atomic_path, write_json_atomic
from lmfs.data.document import Document
from lmfs.data.steps import GlobalStep, Step, StepStats, build_step, counted

__all__ = ["PipelineConfig", "PipelineError", "load_config", "run_pipeline", "sha256_file"]

DEFAULT_STEPS: list[dict[str, Any]] = [
    {"type": "extract"},
    {"type": "language", "languages": ["en"], "min_score": 0.65},
    {"type": "pii"},
    {"type": "harmful", "threshold": 0.99},
    {"type": "gopher"},
    {"type": "quality", "threshold": 0.5},
    {"type": "minhash", "num_hashes": 128, "num_bands": 16, "ngrams": 5, "jaccard_threshold": 0.8},
    {"type": "line_dedup"},
    {"type": "min_length", "min_chars": 200},
]


class PipelineError(RuntimeError):
    """A run that could not finish: the message names the failed shards and says that a rerun resumes."""


@dataclass
class PipelineConfig:
    inputs: list[str]
    output_dir: str
    steps: list[dict[str, Any]] = field(default_factory=lambda: [dict(s) for s in DEFAULT_STEPS])
    output_format: str = "jsonl.gz"
    executor: dict[str, Any] = field(default_factory=lambda: {"kind": "local", "workers": 2})
    limits: dict[str, int] = field(default_factory=dict)
    tokenize: dict[str, Any] | None = None
    record_dropped_ids: bool = True

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def fingerprint(self) -> str:
        """What decides the output (not the executor): a changed fingerprint means a different run."""
        d = self.to_json()
        d.pop("executor")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _resolve_inputs(patterns: list[str], base: Path) -> list[str]:
    out: list[str] = []
    for pat in patterns:
        p = pat if os.path.isabs(pat) else str(base / pat)
        matches = sorted(glob(p))
        if not matches:
            raise ValueError(f"inputs: {pat!r} matches no file")
        out.extend(os.path.abspath(m) for m in matches)
    names: dict[str, str] = {}
    for m in out:
        n = Path(m).name
        if n in names and names[n] != m:
            raise ValueError(f"inputs: two shards share the name {n!r} ({names[n]} and {m}); shard names key the run")
        names[n] = m
    return list(dict.fromkeys(out))


def load_config(source: str | os.PathLike | dict[str, Any], base_dir: str | os.PathLike | None = None
                ) -> PipelineConfig:
    """A config from a TOML file (paths relative to its folder) or a dict (relative to ``base_dir``)."""
    if isinstance(source, dict):
        raw, base = dict(source), Path(base_dir or ".")
        where = "config"
    else:
        path = Path(source)
        where = str(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: not valid TOML: {e}") from None
        base = path.resolve().parent
    known = {"inputs", "output_dir", "steps", "output_format", "executor", "limits", "tokenize",
             "record_dropped_ids"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    for key in ("inputs", "output_dir"):
        if key not in raw:
            raise ValueError(f"{where}: missing {key!r}")
    if not isinstance(raw["inputs"], list) or not all(isinstance(x, str) for x in raw["inputs"]):
        raise ValueError(f"{where}: 'inputs' must be a list of paths or globs")
    out_dir = raw["output_dir"]
    cfg = PipelineConfig(
        inputs=_resolve_inputs(raw["inputs"], base),
        output_dir=out_dir if os.path.isabs(out_dir) else os.path.abspath(base / out_dir),
    )
    if "steps" in raw:
        cfg.steps = [dict(s) for s in raw["steps"]]
    if "output_format" in raw:
        cfg.output_format = raw["output_format"]
    if cfg.output_format not in ("jsonl.gz", "parquet"):
        raise ValueError(f"{where}: output_format must be 'jsonl.gz' or 'parquet', not {cfg.output_format!r}")
    if "executor" in raw:
        cfg.executor = {"kind": "local", "workers": 2, **raw["executor"]}
    if cfg.executor.get("kind") not in ("local", "ray"):
        raise ValueError(f"{where}: executor.kind must be 'local' or 'ray', not {cfg.executor.get('kind')!r}")
    cfg.limits = dict(raw.get("limits", {}))
    bad = set(cfg.limits) - {"max_record_bytes", "max_decompressed_bytes"}
    if bad:
        raise ValueError(f"{where}: unknown limit(s) {sorted(bad)}")
    cfg.tokenize = raw.get("tokenize")
    cfg.record_dropped_ids = bool(raw.get("record_dropped_ids", True))
    plan(cfg)  # validates the steps
    return cfg


# ----------------------------------------------------------------------------------------------- plan


@dataclass
class Stage:
    index: int
    apply: GlobalStep | None  # the previous stage's global step, applied first
    steps: list[Step]
    collect: GlobalStep | None  # this stage's global step, collected last
    last: bool


def plan(cfg: PipelineConfig) -> list[Stage]:
    steps = [build_step(s) for s in cfg.steps]
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"steps: names must be unique (give repeated types a 'name'): {names}")
    stages: list[Stage] = []
    current: list[Step] = []
    pending: GlobalStep | None = None
    for s in steps:
        if isinstance(s, GlobalStep):
            stages.append(Stage(len(stages), pending, current, s, False))
            current, pending = [], s
        else:
            current.append(s)
    stages.append(Stage(len(stages), pending, current, None, True))
    return stages


# ----------------------------------------------------------------------------------------------- tasks


def _work(cfg: PipelineConfig, stage: int) -> Path:
    return Path(cfg.output_dir) / "work" / f"stage{stage}"


def _out_name(cfg: PipelineConfig, shard: str) -> Path:
    ext = ".parquet" if cfg.output_format == "parquet" else ".jsonl.gz"
    return Path(cfg.output_dir) / "output" / f"{Path(shard).name}{ext}"


def marker_path(cfg: PipelineConfig, stage: int, shard: str | None) -> Path:
    return _work(cfg, stage) / (f"{Path(shard).name}.done.json" if shard else "global.done.json")


def _write_jsonl_gz(path: Path, docs: Iterable[Document]) -> int:
    n = 0
    with atomic_open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        for d in docs:
            gz.write(json.dumps(d.to_json(), ensure_ascii=False, sort_keys=True).encode("utf-8"))
            gz.write(b"\n")
            n += 1
    return n


def _read_jsonl_gz(path: Path) -> Iterator[Document]:
    with gzip.open(path, "rb") as f:
        for line in f:
            yield Document.from_json(json.loads(line))


def _write_parquet(path: Path, docs: Iterable[Document]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [d.to_json() for d in docs]
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "url": [r["url"] for r in rows],
            "text": [r["text"] for r in rows],
            "meta": [json.dumps(r["meta"], sort_keys=True, ensure_ascii=False) for r in rows],
        },
        schema=pa.schema([("id", pa.string()), ("url", pa.string()), ("text", pa.string()), ("meta", pa.string())]),
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return len(rows)


def _tokenizer(spec: dict[str, Any]):
    from lmfs.paths import shared_data
    from lmfs.tokenizer.formats import load_gpt2, load_tokenizer

    name = spec.get("tokenizer", "gpt2")
    if name == "gpt2":
        return load_gpt2(shared_data("tokenizers", "gpt2_encoder.json"), shared_data("tokenizers", "gpt2_vocab.bpe"))
    return load_tokenizer(name)


def _tokens_path(cfg: PipelineConfig, shard: str) -> Path:
    return Path(cfg.output_dir) / "work" / "tokens" / f"{Path(shard).name}.npy"


def _write_tokens(cfg: PipelineConfig, shard: str, docs: list[Document]) -> int:
    import numpy as np

    spec = cfg.tokenize or {}
    tok = _tokenizer(spec)
    eot = spec.get("eot", "<|endoftext|>")
    eot_ids = tok.encode(eot) if eot else []
    ids: list[int] = []
    for d in docs:
        ids.extend(tok.encode(d.text))
        ids.extend(eot_ids)
    dtype = np.uint16 if max(ids, default=0) < 65536 else np.uint32
    arr = np.asarray(ids, dtype=dtype)
    with atomic_open(_tokens_path(cfg, shard), "wb") as f:
        np.save(f, arr)
    return int(arr.size)


def _limits(cfg: PipelineConfig) -> dict[str, int]:
    return {k: int(v) for k, v in cfg.limits.items()}


def run_shard_task(cfg_json: dict[str, Any], stage_index: int, shard: str) -> dict[str, Any]:
    """Run one stage on one shard and write its marker; returns the marker's content. Idempotent."""
    from lmfs.data.readers import read_shard

    cfg = PipelineConfig(**cfg_json)
    stage = plan(cfg)[stage_index]
    marker = marker_path(cfg, stage_index, shard)
    if marker.is_file():
        return json.loads(marker.read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    all_stats: list[StepStats] = []
    name = Path(shard).name
    if stage_index == 0:
        read_stats = StepStats("read")
        all_stats.append(read_stats)
        raw_docs = read_shard(shard, lambda reason, doc: read_stats.drop(doc, reason), **_limits(cfg))
        docs: Iterable[Document] = counted(raw_docs, read_stats, "out")
    else:
        docs = _read_jsonl_gz(_work(cfg, stage_index - 1) / f"{name}.jsonl.gz")
    if stage.apply is not None:
        st = StepStats(stage.apply.name)
        all_stats.append(st)
        state = _work(cfg, stage_index - 1) / "global.npz"
        docs = counted(stage.apply.apply(counted(docs, st, "in"), st, state), st, "out")
    for step in stage.steps:
        st = StepStats(step.name)
        all_stats.append(st)
        docs = counted(step(counted(docs, st, "in"), st), st, "out")
    result: dict[str, Any] = {"shard": shard, "stage": stage_index}
    if stage.collect is not None:
        docs = stage.collect.collect(docs, _work(cfg, stage_index) / f"{name}.partial.npz")
    if stage.last:
        out = _out_name(cfg, shard)
        if cfg.tokenize:
            kept = list(docs)
            result["tokens"] = _write_tokens(cfg, shard, kept)
            docs = kept
        writer = _write_parquet if cfg.output_format == "parquet" else _write_jsonl_gz
        result["documents"] = writer(out, docs)
        result["output"] = str(out)
    else:
        result["documents"] = _write_jsonl_gz(_work(cfg, stage_index) / f"{name}.jsonl.gz", docs)
    if stage_index == 0:
        read_stats.in_docs = read_stats.out_docs + sum(read_stats.dropped.values())
    if not cfg.record_dropped_ids:
        for s in all_stats:
            s.dropped_ids = {}
    result["steps"] = [s.to_json() for s in all_stats]
    result["seconds"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(marker, result)
    return result


def run_combine_task(cfg_json: dict[str, Any], stage_index: int) -> dict[str, Any]:
    """The global ``combine`` of a stage over all its shards' partials; writes ``global.npz`` and a marker."""
    cfg = PipelineConfig(**cfg_json)
    stage = plan(cfg)[stage_index]
    marker = marker_path(cfg, stage_index, None)
    if marker.is_file():
        return json.loads(marker.read_text(encoding="utf-8"))
    assert stage.collect is not None
    partials = [_work(cfg, stage_index) / f"{Path(s).name}.partial.npz" for s in cfg.inputs]
    info = stage.collect.combine(partials, _work(cfg, stage_index) / "global.npz")
    result = {"stage": stage_index, "step": stage.collect.name, **info}
    write_json_atomic(marker, result)
    return result


# ----------------------------------------------------------------------------------------------- driver


def _check_run_dir(cfg: PipelineConfig) -> None:
    out = Path(cfg.output_dir)
    meta = out / "run.json"
    if meta.is_file():
        old = json.loads(meta.read_text(encoding="utf-8"))
        if old.get("fingerprint") != cfg.fingerprint():
            raise PipelineError(
                f"{out} holds a run of a different config (fingerprint {old.get('fingerprint')} != "
                f"{cfg.fingerprint()}); use a new output_dir or remove it"
            )
    else:
        write_json_atomic(meta, {"fingerprint": cfg.fingerprint(), "config": cfg.to_json()})
    for stale in out.rglob(".*.tmp-*"):  # temp files of a killed run (never a half-written output)
        stale.unlink(missing_ok=True)


def make_executor(cfg: PipelineConfig):
    from lmfs.data.executors import LocalExecutor, RayExecutor

    ex = dict(cfg.executor)
    kind = ex.pop("kind", "local")
    if kind == "ray":
        return RayExecutor(address=ex.get("address") or None, num_cpus=ex.get("workers"))
    return LocalExecutor(workers=int(ex.get("workers", 2)), start_method=ex.get("start_method", "forkserver"))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_pipeline(cfg: PipelineConfig, executor: Any = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the pipeline; returns the summary (also written to ``summary.json``)."""
    t0 = time.perf_counter()
    stages = plan(cfg)
    _check_run_dir(cfg)
    own = executor is None
    executor = executor or make_executor(cfg)
    cfg_json = cfg.to_json()
    markers: dict[tuple[int, str], dict[str, Any]] = {}
    combines: list[dict[str, Any]] = []
    try:
        for stage in stages:
            todo = [s for s in cfg.inputs if not marker_path(cfg, stage.index, s).is_file()]
            for s in cfg.inputs:
                if s not in todo:
                    markers[stage.index, s] = json.loads(marker_path(cfg, stage.index, s).read_text("utf-8"))
            results = executor.map(
                run_shard_task, [(cfg_json, stage.index, s) for s in todo],
                desc=f"stage {stage.index + 1}/{len(stages)}", progress=progress,
            )
            failed = []
            for s, (ok, value) in zip(todo, results, strict=True):
                if ok:
                    markers[stage.index, s] = value
                else:
                    failed.append(f"{Path(s).name}: {value}")
            if failed:
                raise PipelineError(
                    f"stage {stage.index + 1}: {len(failed)} of {len(cfg.inputs)} shard(s) failed "
                    f"({'; '.join(failed)}); the other shards are done — rerun the same command to retry only "
                    "the unfinished ones"
                )
            if stage.collect is not None:
                [(ok, value)] = executor.map(run_combine_task, [(cfg_json, stage.index)], desc=None, progress=False)
                if not ok:
                    raise PipelineError(f"stage {stage.index + 1}: global step {stage.collect.name!r} failed: {value}")
                combines.append(value)
    finally:
        if own:
            executor.close()
    if cfg.tokenize:
        _concat_tokens(cfg)
    summary = summarize(cfg, stages, markers, combines)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    manifest = {
        str(p.relative_to(cfg.output_dir)): sha256_file(p)
        for p in sorted(Path(cfg.output_dir, "output").iterdir())
        if p.is_file() and not p.name.startswith(".")
    }
    if cfg.tokenize:
        manifest["tokens.npy"] = sha256_file(Path(cfg.output_dir) / "tokens.npy")
    summary["manifest"] = manifest
    write_json_atomic(Path(cfg.output_dir) / "manifest.json", manifest)
    write_json_atomic(Path(cfg.output_dir) / "summary.json", summary)
    return summary


def _concat_tokens(cfg: PipelineConfig) -> None:
    import numpy as np

    parts = [np.load(_tokens_path(cfg, s), mmap_mode="r") for s in cfg.inputs]
    dtype = np.uint32 if any(p.dtype == np.uint32 for p in parts) else np.uint16
    total = sum(int(p.size) for p in parts)
    target = Path(cfg.output_dir) / "tokens.npy"
    with atomic_path(target) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(total,))
        pos = 0
        for p in parts:
            out[pos : pos + p.size] = p
            pos += p.size
        out.flush()
        del out


def summarize(cfg: PipelineConfig, stages: list[Stage], markers: dict[tuple[int, str], dict[str, Any]],
              combines: list[dict[str, Any]]) -> dict[str, Any]:
    """The funnel: each step's documents/bytes in and out over all shards, drops by reason with examples."""
    order: list[str] = []
    per_step: dict[str, list[dict[str, Any]]] = {}
    for stage in stages:
        for s in cfg.inputs:
            for st in markers[stage.index, s]["steps"]:
                if st["name"] not in per_step:
                    order.append(st["name"])
                per_step.setdefault(st["name"], []).append(st)
    steps = [StepStats.merge(n, per_step[n]) for n in order]
    if steps and steps[0]["name"] == "read":
        steps[0]["in_bytes"] = sum(os.path.getsize(s) for s in cfg.inputs)
    shards = [
        {"shard": Path(s).name, "documents": markers[len(stages) - 1, s]["documents"],
         "seconds": sum(markers[st.index, s]["seconds"] for st in stages)}
        for s in cfg.inputs
    ]
    return {
        "fingerprint": cfg.fingerprint(),
        "inputs": [Path(s).name for s in cfg.inputs],
        "output_dir": cfg.output_dir,
        "output_format": cfg.output_format,
        "executor": cfg.executor,
        "steps": steps,
        "global": combines,
        "shards": shards,
        "documents_out": sum(x["documents"] for x in shards),
    }
