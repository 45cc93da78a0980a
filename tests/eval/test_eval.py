"""Evaluations on a tiny random character-level model: resumable per-example files (a torn last line is
dropped, done rows are not recomputed), the MMLU letter scoring equals a full forward pass, intervals."""

from __future__ import annotations

import json
import string

import numpy as np
import pytest
import torch

from lmfs.align.models import LoadedModel
from lmfs.align.stats import accuracy_summary, bootstrap_mean_interval, wilson_interval
from lmfs.align.tasks import CharTokenizer
from lmfs.eval.results import ResultsFile
from lmfs.nn import TransformerConfig, TransformerLM
from lmfs.paths import has_shared_data


@pytest.fixture(scope="module")
def tiny_lm():
    tok = CharTokenizer(string.printable, unknown="?")
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=tok.vocab_size, context_length=4096, d_model=16,
                                            num_layers=1, num_heads=2, d_ff=32)).eval()
    return LoadedModel(model, tok, "tiny", [tok.eos_token_id], None, tok.spec())


def test_wilson_known_values():
    # reference values of the Wilson score interval (z = 1.96)
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert accuracy_summary([True, False, True, True])["accuracy"] == 0.75
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_bootstrap_interval_contains_mean():
    vals = list(np.random.default_rng(0).normal(3.0, 1.0, 200))
    lo, hi = bootstrap_mean_interval(vals)
    assert lo < float(np.mean(vals)) < hi and hi - lo < 0.5


def test_results_file_drops_a_torn_line(tmp_path):
    path = tmp_path / "examples.jsonl"
    path.write_text(json.dumps({"id": "a", "correct": True}) + "\n" + '{"id": "b", "corr')
    rf = ResultsFile(path)
    assert rf.done("a") and not rf.done("b") and rf.dropped == 1
    rf.add([{"id": "b", "correct": False}])
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "b"]


@pytest.mark.skipif(not has_shared_data("eval", "gsm8k"), reason="needs the shared GSM8K files")
def test_gsm8k_resumes_where_it_stopped(tiny_lm, tmp_path):
    from lmfs.eval.gsm8k import run_gsm8k

    first = run_gsm8k(tiny_lm, tmp_path, limit=2, batch_size=2, max_tokens=4, progress=False)
    assert first["n"] == 2 and first["this_call"]["problems"] == 2
    again = run_gsm8k(tiny_lm, tmp_path, limit=3, batch_size=2, max_tokens=4, progress=False)
    assert again["n"] == 3 and again["this_call"]["problems"] == 1  # only the new one ran
    rows = [json.loads(x) for x in (tmp_path / "examples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["test-0", "test-1", "test-2"]
    assert all(r["gold"] and "output" in r for r in rows)


def test_gsm8k_answer_match():
    from lmfs.eval.data import gsm8k_gold
    from lmfs.eval.gsm8k import answers_match

    assert gsm8k_gold("so 3 + 4 = 7\n#### 1,007") == "1007"
    assert answers_match("18.00", "18") and not answers_match("18.5", "18") and not answers_match(None, "1")
    with pytest.raises(ValueError, match="####"):
        gsm8k_gold("no final line")


@pytest.mark.skipif(not has_shared_data("eval", "mmlu"), reason="needs the shared MMLU files")
def test_mmlu_letter_scores_match_a_full_forward(tiny_lm, tmp_path):
    from lmfs.eval.data import load_mmlu
    from lmfs.eval.mmlu import format_question, letter_tokens, prefix_text, run_mmlu
    from lmfs.nn.functional import log_softmax

    summary = run_mmlu(tiny_lm, tmp_path, per_subject=2, shots=1, subjects=["astronomy"], progress=False)
    assert summary["n"] == 2 and summary["subjects"] == 1
    row = json.loads((tmp_path / "examples.jsonl").read_text().splitlines()[0])
    tok = tiny_lm.tokenizer
    q = load_mmlu("astronomy")[0]
    letters, lead = letter_tokens(tok)
    ids = tok.encode(prefix_text("astronomy", load_mmlu("astronomy", "dev")[:1]) + format_question(q, False)) + lead
    with torch.no_grad():
        lp = log_softmax(tiny_lm.model(torch.tensor([ids]))[0, -1])
    assert row["letter_logprobs"] == pytest.approx([float(lp[i]) for i in letters], abs=1e-3)


def test_ppl_on_a_token_file(tiny_lm, tmp_path):
    from lmfs.eval.ppl import run_ppl

    toks = np.random.default_rng(0).integers(0, tiny_lm.tokenizer.vocab_size, 2000).astype(np.uint16)
    np.save(tmp_path / "t.npy", toks)
    s = run_ppl(tiny_lm, tmp_path / "t.npy", tmp_path / "out", seq_len=64, max_windows=8, progress=False)
    assert s["windows"] == 8 and s["ci95_low"] <= s["perplexity"] <= s["ci95_high"]
    # a random model on uniform tokens: close to the vocabulary size
    assert 0.5 * tiny_lm.tokenizer.vocab_size < s["perplexity"] < 2 * tiny_lm.tokenizer.vocab_size
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full(100, 60000, dtype=np.uint16))
    with pytest.raises(ValueError, match="vocab"):
        run_ppl(tiny_lm, bad, tmp_path / "out2", seq_len=16, progress=False)


def test_cli_eval_bad_model(capsys):
    from lmfs.cli import main

    assert main(["eval", "gsm8k", "--model", "/nonexistent/model.gguf"]) == 1
    assert "GGUF file not found" in capsys.readouterr().err
