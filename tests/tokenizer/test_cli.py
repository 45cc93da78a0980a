"""`lmfs tokenizer train|encode|decode|compress` end to end on a small corpus, and the report section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lmfs.cli import main
from lmfs.tokenizer.report import section

EOT = "<|endoftext|>"


def test_train_encode_decode(tmp_path: Path, corpus_en: str, capsys) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(f"{corpus_en}\n{EOT}\n{corpus_en[:2000]}", encoding="utf-8")
    tok_dir = tmp_path / "tok"
    rc = main(
        [
            "tokenizer",
            "train",
            str(corpus),
            "--vocab-size",
            "400",
            "--special-token",
            EOT,
            "--out",
            str(tok_dir),
            "--no-progress",
            "--workers",
            "2",
        ]
    )
    assert rc == 0 and "trained 400 tokens" in capsys.readouterr().out
    stats = json.loads((tok_dir / "train_stats.json").read_text())
    assert stats["num_merges"] == 400 - 257 and stats["peak_rss_mb"] > 0

    out = tmp_path / "ids.npy"
    assert (
        main(
            [
                "tokenizer",
                "encode",
                str(corpus),
                "--tokenizer",
                str(tok_dir),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "bytes/token" in capsys.readouterr().out
    ids = np.load(out, mmap_mode="r")
    assert ids.dtype == np.uint16 and (ids == 256).sum() == 1
    assert json.loads(Path(str(out) + ".json").read_text())["tokens"] == len(ids)

    text_out = tmp_path / "back.txt"
    assert main(["tokenizer", "decode", str(out), "--tokenizer", str(tok_dir), "--out", str(text_out)]) == 0
    assert text_out.read_text(encoding="utf-8") == corpus.read_text(encoding="utf-8")
    assert main(["tokenizer", "decode", "--ids", "72", "105", "--tokenizer", str(tok_dir)]) == 0
    assert capsys.readouterr().out == "Hi\n"

    report = tmp_path / "cmp.json"
    assert (
        main(["tokenizer", "compress", str(corpus), "--tokenizer", str(tok_dir), "--json", str(report)]) == 0
    )
    data = json.loads(report.read_text())
    assert set(data["tokenizers"]) == {"tok", "gpt2"}
    assert data["tokenizers"]["gpt2"]["bytes_per_token"] > data["tokenizers"]["tok"]["bytes_per_token"] > 1


def test_report_section(tmp_path: Path) -> None:
    assert section(tmp_path) is None
    d = tmp_path / "data" / "tokenizer"
    d.mkdir(parents=True)
    (d / "gutenberg-10k.json").write_text("{not json")
    assert section(tmp_path) is None
    (d / "gutenberg-10k.json").write_text(
        json.dumps(
            {
                "train": {
                    "total_s": 10.0,
                    "pretokenize_s": 6.0,
                    "merge_s": 4.0,
                    "peak_rss_mb": 500,
                    "peak_worker_rss_mb": 200,
                },
                "compression_valid": {"mine": {"vocab_size": 10000, "tokens": 100, "bytes_per_token": 3.6}},
                "commands": ["lmfs tokenizer train X"],
            }
        )
    )
    s = section(tmp_path)
    assert s is not None and "3.6" in s.html and "lmfs tokenizer train X" in s.html


def test_report_targets_from_bench_store(tmp_path: Path) -> None:
    bench = tmp_path / "bench" / "cpu-test-2c"
    bench.mkdir(parents=True)

    def entry(group: str, impl: str, median: float) -> dict:
        return {"group": group, "extra_info": {"impl": impl}, "stats": {"median": median}}

    (bench / "abc.json").write_text(
        json.dumps(
            {
                "benchmarks": [
                    entry("tokenizer-train-10MB-vocab10k", "lmfs", 2.0),
                    entry("tokenizer-train-10MB-vocab10k", "hf-tokenizers", 4.0),
                    entry("tokenizer-encode-gpt2-single-thread", "lmfs", 3.0),
                    entry("tokenizer-encode-gpt2-single-thread", "tiktoken", 1.0),
                ]
            }
        )
    )
    s = section(tmp_path)
    assert s is not None
    assert "<td>yes</td>" in s.html and "<td>no</td>" in s.html  # 0.5× met; 3.0× (> 2.0) not


def test_report_targets_take_each_row_from_the_newest_run_that_has_it(tmp_path: Path) -> None:
    bench = tmp_path / "bench" / "cpu-test-2c"
    bench.mkdir(parents=True)

    def run(name: str, when: str, entries: list[tuple[str, str, float]]) -> None:
        benchmarks = [
            {"group": g, "extra_info": {"impl": impl, "backend": "c"}, "stats": {"median": m}}
            for g, impl, m in entries
        ]
        (bench / name).write_text(json.dumps({"datetime": when, "benchmarks": benchmarks}))

    # file names sort the other way round from the timestamps: only the timestamps may decide
    run(
        "a-new.json",
        "2026-11-26T10:00:00",
        [
            ("tokenizer-train-10MB-vocab10k", "lmfs", 1.0),
            ("tokenizer-train-10MB-vocab10k", "hf-tokenizers", 4.0),
        ],
    )
    run(
        "z-old.json",
        "2026-11-25T10:00:00",
        [
            ("tokenizer-train-10MB-vocab10k", "lmfs", 9.0),
            ("tokenizer-train-10MB-vocab10k", "hf-tokenizers", 1.0),
            ("tokenizer-train-100MB-vocab10k", "lmfs", 3.0),
            ("tokenizer-train-100MB-vocab10k", "hf-tokenizers", 2.0),
        ],
    )
    s = section(tmp_path)
    assert s is not None
    assert "<td>0.25</td>" in s.html and "<td>9.0</td>" not in s.html  # 10 MB from the newer run
    assert "<td>1.5</td>" in s.html and "cpu-test-2c/z-old" in s.html  # 100 MB only in the older one


def test_backend_flag_gives_the_same_files(tmp_path: Path, corpus_en: str, capsys) -> None:
    """`--backend python` and `--backend c` (when built) train the same tokenizer and write the same ids."""
    from lmfs.tokenizer import native

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(f"{corpus_en}\n{EOT}\n{corpus_en[:3000]}", encoding="utf-8")
    backends = ["python"] + (["c"] if native.load("_ctext") and native.load("_cmerge") else [])
    for b in backends:
        tok_dir = tmp_path / f"tok-{b}"
        args = ["tokenizer", "train", str(corpus), "--vocab-size", "500", "--special-token", EOT]
        assert main([*args, "--out", str(tok_dir), "--no-progress", "--backend", b]) == 0
        assert json.loads((tok_dir / "train_stats.json").read_text())["backend"] == b
        out = tmp_path / f"ids-{b}.npy"
        args = ["tokenizer", "encode", str(corpus), "--tokenizer", str(tok_dir), "--out", str(out)]
        assert main([*args, "--no-progress", "--backend", b]) == 0
        assert json.loads(Path(str(out) + ".json").read_text())["backend"] == b
        assert f"{b} backend" in capsys.readouterr().out
    if len(backends) == 2:
        for name in ("vocab.json", "merges.txt"):
            assert (tmp_path / "tok-c" / name).read_bytes() == (tmp_path / "tok-python" / name).read_bytes()
        assert np.array_equal(np.load(tmp_path / "ids-c.npy"), np.load(tmp_path / "ids-python.npy"))


def test_bad_inputs_are_one_line_errors(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    for cmd in (
        ["train", str(bad), "--vocab-size", "300", "--out", str(tmp_path / "t")],
        ["encode", str(bad), "--gpt2", "--out", str(tmp_path / "x.npy")],
    ):
        assert main(["tokenizer", *cmd, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "not valid UTF-8 at byte offset 3" in err and "Traceback" not in err
    assert (
        main(["tokenizer", "train", str(tmp_path / "missing.txt"), "--vocab-size", "300", "--out", "t"]) == 2
    )
    assert "corpus not found" in capsys.readouterr().err
