"""Report section: SmolLM2-135M running on lmfs.nn (from the maintainer export
``lmfs model smollm2 --prompt ... --export reports/data/nn/smollm2.json``). Says which commit, date, machine and
thread count the speed comes from, and marks the record STALE when the decoding code changed after it."""

from __future__ import annotations

import json
import pathlib

from lmfs.reporting import Section, escape, note, provenance, staleness

#: the code the stored decoding speed measures
CODE = ["lmfs/nn", "lmfs/generate"]


def section(reports_dir: pathlib.Path) -> Section | None:
    path = pathlib.Path(reports_dir) / "data" / "nn" / "smollm2.json"
    if not path.is_file():
        return None
    try:
        r = json.loads(path.read_text(encoding="utf-8"))
        cfg = r["config"]
        cache = {True: "KV cache", False: "no KV cache"}.get(r.get("kv_cache"), "KV cache not recorded")
        rows = [
            ("checkpoint", f"{r['model']} ({r['gguf']})"),
            (
                "shape",
                f"{cfg['num_layers']} layers, d_model {cfg['d_model']}, {cfg['num_heads']} heads / "
                f"{cfg['num_kv_heads']} KV heads, d_ff {cfg['d_ff']}, RoPE θ {cfg['rope_theta']:g}, "
                f"tied embeddings {cfg['tie_embeddings']}",
            ),
            ("parameters", f"{r['parameters']:,}"),
            (
                "decoding",
                f"temperature {r['temperature']} · {r['new_tokens']} tokens in {r['seconds']} s "
                f"({r['tokens_per_s']} tok/s, {r['threads']} CPU threads, {cache}) · torch {r['torch']}",
            ),
        ]
    except (KeyError, TypeError, ValueError) as exc:
        return Section("nn-smollm2", "SmolLM2-135M on lmfs.nn", note(f"{path} is malformed: {exc}"), order=45)
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    body = (
        provenance(source="reports/data/nn/smollm2.json", commit=r.get("commit"), date=r.get("date"),
                   machine=r.get("machine_id"), threads=r.get("threads"),
                   extra=("load average at the end " + " / ".join(f"{x:g}" for x in r["load"]))
                   if isinstance(r.get("load"), list) else "load not recorded")
        + staleness("the stored SmolLM2 decoding record", CODE, commit=r.get("commit"), date=r.get("date"))
        + note(
            "A pretrained Llama checkpoint (GGUF, dequantized) mapped into lmfs's from-scratch TransformerLM and "
            "decoded with lmfs's own tokenizer. tests/nn/test_llama_loader.py checks its logits against an "
            "independent Hugging-Face-layout forward of the same weights. Refresh: lmfs model smollm2 --prompt "
            "'...' --threads 1 --export reports/data/nn/smollm2.json (one thread: on a busy 2-core box two threads decode several times slower)."
        )
        + f'<table class="table">{table}</table>'
        + f"<pre>{escape(r['prompt'])}<b>{escape(r['completion'])}</b></pre>"
    )
    return Section("nn-smollm2", "SmolLM2-135M on lmfs.nn", body, order=45)
