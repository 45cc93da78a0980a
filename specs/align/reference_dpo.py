"""References and helpers for the align data / parsing / DPO specs, written independently of any implementation:
where the shared data is, GPT-2's tokenizer built offline from its files, the Alpaca template written out, a
packing reference, and the DPO loss scored one next-token prediction at a time."""

from __future__ import annotations

import math
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch

ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{prompt}\n\n### Response:\n{response}"
)


def shared_data(*parts: str) -> Path:
    """A path under the shared data folder (``$LMFS_SHARED_DIR/data`` or ``../shared/data``); skips the test when
    the folder or the file is missing."""
    env = os.environ.get("LMFS_SHARED_DIR")
    here = Path(__file__).resolve()
    for base in ([Path(env)] if env else []) + [here.parents[3] / "shared", Path.cwd().parent / "shared"]:
        if (base / "data").is_dir():
            path = base.joinpath("data", *parts)
            if not path.exists():
                pytest.skip(f"{path} not found")
            return path
    pytest.skip("shared data folder not found (set LMFS_SHARED_DIR)")


@cache
def _gpt2_tokenizer(vocab: str, merges: str) -> Any:
    from transformers import GPT2TokenizerFast

    # transformers 5 takes the files as ``vocab`` / ``merges`` (and silently ignores ``vocab_file``, giving an
    # empty vocabulary); 4.x takes ``vocab_file`` / ``merges_file``
    for kwargs in ({"vocab": vocab, "merges": merges}, {"vocab_file": vocab, "merges_file": merges}):
        try:
            tok = GPT2TokenizerFast(**kwargs)
        except TypeError:
            continue
        if len(tok) == 50257 and tok.eos_token_id == 50256:
            return tok
    raise RuntimeError("could not build GPT2TokenizerFast from the shared GPT-2 files")


def gpt2_tokenizer() -> Any:
    """GPT-2's tokenizer (``transformers.GPT2TokenizerFast``) from the shared encoder.json / vocab.bpe, offline.
    EOS is ``<|endoftext|>`` (50256); it adds no BOS."""
    pytest.importorskip("transformers")
    vocab = shared_data("tokenizers", "gpt2_encoder.json")
    merges = shared_data("tokenizers", "gpt2_vocab.bpe")
    return _gpt2_tokenizer(str(vocab), str(merges))


def document_ids(tokenizer: Any, prompt: str, response: str) -> list[int]:
    """One example as packed and scored: the Alpaca text's ids, then EOS."""
    return [
        *list(tokenizer(ALPACA.format(prompt=prompt, response=response))["input_ids"]),
        tokenizer.eos_token_id,
    ]


def packed_windows(
    tokenizer: Any, records: list[dict[str, str]], seq_length: int
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) windows of the CS336 packing: documents in order, (N - 1) // seq_length windows."""
    stream: list[int] = []
    for rec in records:
        stream += document_ids(tokenizer, rec["prompt"], rec["response"])
    out = []
    for k in range((len(stream) - 1) // seq_length):
        a = k * seq_length
        out.append((stream[a : a + seq_length], stream[a + 1 : a + seq_length + 1]))
    return out


def sequence_log_prob_loop(model: Any, ids: list[int]) -> float:
    """Σ_t log p(ids[t] | ids[:t]), one forward pass per prefix, reading only the last position's logits."""
    total = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            logits = model(torch.tensor([ids[:t]])).logits[0, -1].double()
            total += float(torch.log_softmax(logits, dim=-1)[ids[t]])
    return total


def sequence_log_prob_autograd(model: Any, ids: list[int]) -> torch.Tensor:
    """The same sum from one forward pass, differentiable (for gradient checks)."""
    x = torch.tensor([ids])
    logp = torch.log_softmax(model(x).logits[0, :-1], dim=-1)
    return logp[torch.arange(len(ids) - 1), x[0, 1:]].sum()


def dpo_loss(beta: float, pi_w: float, ref_w: float, pi_l: float, ref_l: float) -> float:
    """-log σ(β((π_w - ref_w) - (π_l - ref_l))), computed stably."""
    m = beta * ((pi_w - ref_w) - (pi_l - ref_l))
    return math.log1p(math.exp(-m)) if m > 0 else -m + math.log1p(math.exp(m))
