"""Bounded memory on a 100 MB single line with no newline (slow)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

SENTENCE = "the quick brown fox jumps over the lazy dog, said Ann to Bob. "


@pytest.fixture(scope="module")
def one_line_100mb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "line.txt"
    block = (SENTENCE * (1_000_000 // len(SENTENCE))).encode()
    with open(path, "wb") as f:
        for _ in range(100):
            f.write(block)
    return path


_COUNT_IN_A_FRESH_PROCESS = """
import json, resource, sys
from lmfs.tokenizer.counting import count_pretokens
counts = count_pretokens(sys.argv[1], num_workers=2)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"fox": counts[" fox"], "the": counts["the"], "_the": counts[" the"], "worker_peak_mb": peak}))
"""


@pytest.mark.slow
def test_counting_a_100mb_line_is_chunked_and_bounded(one_line_100mb: Path) -> None:
    # in a fresh process: RUSAGE_CHILDREN's peak covers every child a process ever waited for, so in pytest it
    # would include the children of earlier tests
    run = subprocess.run(
        [sys.executable, "-c", _COUNT_IN_A_FRESH_PROCESS, str(one_line_100mb)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    got = json.loads(run.stdout)
    n_sentences = 100 * (1_000_000 // len(SENTENCE))
    assert got["fox"] == n_sentences and got["the"] == 1 and got["_the"] == 2 * n_sentences - 1
    assert got["worker_peak_mb"] < 600, f"a worker peaked at {got['worker_peak_mb']:.0f} MB on 4 MB chunks"


@pytest.mark.slow
def test_encode_iterable_on_a_100mb_line(one_line_100mb: Path, gpt2_tokenizer) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = 0
    with open(one_line_100mb, encoding="utf-8") as f:
        for _ in gpt2_tokenizer.encode_iterable(f):
            n += 1
    grown_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before  # growth of the peak RSS
    first = len(gpt2_tokenizer.encode(SENTENCE))
    per_repeat = len(gpt2_tokenizer.encode(SENTENCE * 2)) - first  # " the" absorbs the trailing space
    assert n == first + (100 * (1_000_000 // len(SENTENCE)) - 1) * per_repeat
    # the line itself is read as one 100 MB string; the ids are never held (a list of them would be ~180 MB)
    assert grown_mb < 450, f"peak RSS grew {grown_mb:.0f} MB"
