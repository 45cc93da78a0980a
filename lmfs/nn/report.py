"""Report section: SmolLM2-135M running on lmfs.nn (from ``lmfs model smollm2 --export reports/data/nn/smollm2.json``)."""

from __future__ import annotations

import json
import pathlib

from lmfs.reporting import Section, escape, note


def section(reports_dir: pathlib.Path) -> Section | None:
    path = pathlib.Path(reports_dir) / "data" / "nn" / "smollm2.json"
    if not path.is_file():
        return None
    try:
        r = json.loads(path.read_text(encoding="utf-8"))
        cfg = r["config"]
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
                f"({r['tokens_per_s']} tok/s, {r['threads']} CPU threads, no KV cache) · torch {r['torch']}",
            ),
        ]
    except (KeyError, TypeError, ValueError) as exc:
        return Section("nn-smollm2", "SmolLM2-135M on lmfs.nn", note(f"{path} is malformed: {exc}"), order=45)
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    body = (
        note(
            "A pretrained Llama checkpoint (GGUF, dequantized) mapped into lmfs's from-scratch TransformerLM and "
            "decoded with lmfs's own tokenizer. tests/nn/test_llama_loader.py checks its logits against an "
            "independent Hugging-Face-layout forward of the same weights."
        )
        + f'<table class="table">{table}</table>'
        + f"<pre>{escape(r['prompt'])}<b>{escape(r['completion'])}</b></pre>"
        + note(f"generated {r['date']}")
    )
    return Section("nn-smollm2", "SmolLM2-135M on lmfs.nn", body, order=45)
