"""The nn report section: absent data gives None; an exported SmolLM2 record renders, escaped."""

from __future__ import annotations

import json

from lmfs.nn.report import section


def test_section_absent_is_none(tmp_path):
    assert section(tmp_path) is None


def test_section_renders_and_escapes(tmp_path):
    record = {
        "model": "Smollm2",
        "gguf": "x.gguf",
        "parameters": 134515008,
        "prompt": "a <b>",
        "chat": False,
        "completion": " & c",
        "new_tokens": 3,
        "seconds": 1.5,
        "tokens_per_s": 2.0,
        "temperature": 0.0,
        "threads": 2,
        "torch": "2.13",
        "date": "2026-11-26T07:00:00+00:00",
        "config": {
            "num_layers": 30,
            "d_model": 576,
            "num_heads": 9,
            "num_kv_heads": 3,
            "d_ff": 1536,
            "rope_theta": 100000.0,
            "tie_embeddings": True,
        },
    }
    (tmp_path / "data" / "nn").mkdir(parents=True)
    (tmp_path / "data" / "nn" / "smollm2.json").write_text(json.dumps(record))
    sec = section(tmp_path)
    assert sec is not None and "134,515,008" in sec.html
    assert "a &lt;b&gt;" in sec.html and "&amp; c" in sec.html


def test_section_malformed_is_a_note_not_a_crash(tmp_path):
    (tmp_path / "data" / "nn").mkdir(parents=True)
    (tmp_path / "data" / "nn" / "smollm2.json").write_text("{}")
    sec = section(tmp_path)
    assert sec is not None and "malformed" in sec.html
