"""Specs for the packed SFT dataset and the batch iterator (CS336 assignment 5 conventions).

Packing: each ``{"prompt", "response"}`` record in the Alpaca template, tokenized (``tokenizer.encode``; GPT-2
adds no BOS) and followed by EOS; documents concatenated; N tokens give ``(N - 1) // seq_length`` windows,
``input_ids = stream[i*L:(i+1)*L]``, ``labels = stream[i*L+1:(i+1)*L+1]``; the incomplete tail is dropped.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from specs.align.reference_dpo import document_ids, gpt2_tokenizer, packed_windows

RECORDS = [
    {"prompt": "Name three primary colors.", "response": "Red, yellow and blue."},
    {"prompt": "What is 12 * 7?", "response": "12 * 7 = 84."},
    {"prompt": "Translate 'bonjour' into English.", "response": "Hello."},
    {
        "prompt": "Write a haiku about autumn.",
        "response": "Leaves drift on cold wind\nthe pond holds a paler sky\ngeese call, then silence",
    },
    {"prompt": "Give a synonym of 'quick'.", "response": "Fast."},
    {"prompt": "Summarize: The cat sat on the mat all day.", "response": "A cat stayed on a mat."},
    {"prompt": "Spell 'naïve' backwards.", "response": "evïan"},
    {"prompt": "List two prime numbers.", "response": "2 and 3."},
    {"prompt": "Is water wet?", "response": "Water makes other things wet."},
    {"prompt": "What does CPU stand for?", "response": "Central processing unit."},
    {"prompt": "Say nothing.", "response": ""},
    {
        "prompt": "Describe λ-calculus in one sentence.",
        "response": "A formal system of functions and application.",
    },
]


def _write(path, records):
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    return path


def _rows(dataset) -> list[tuple[list[int], list[int]]]:
    out = []
    for i in range(len(dataset)):
        item = dataset[i]
        out.append((torch.as_tensor(item["input_ids"]).tolist(), torch.as_tensor(item["labels"]).tolist()))
    return out


@pytest.mark.points(1)
@pytest.mark.parametrize("seq_length", [1, 7, 32, 100])
def test_packed_sft_dataset_matches_reference_packing(adapter, tmp_path, seq_length):
    tok = gpt2_tokenizer()
    path = _write(tmp_path / "sft.jsonl", RECORDS)
    ds = adapter.get_packed_sft_dataset(
        tokenizer=tok, dataset_path=path, seq_length=seq_length, shuffle=False
    )
    expected = packed_windows(tok, RECORDS, seq_length)
    n_tokens = sum(len(document_ids(tok, r["prompt"], r["response"])) for r in RECORDS)
    assert len(ds) == len(expected) == (n_tokens - 1) // seq_length
    for i, (ids, labels) in enumerate(expected):
        item = ds[i]
        x, y = torch.as_tensor(item["input_ids"]), torch.as_tensor(item["labels"])
        assert x.shape == y.shape == (seq_length,)
        assert not x.is_floating_point() and not y.is_floating_point()
        assert x.tolist() == ids, f"window {i}: input_ids differ from the reference packing"
        assert y.tolist() == labels, f"window {i}: labels differ from the reference packing"


@pytest.mark.points(1)
def test_packed_sft_dataset_labels_are_the_next_tokens(adapter, tmp_path):
    tok = gpt2_tokenizer()
    path = _write(tmp_path / "sft.jsonl", RECORDS)
    rows = _rows(
        adapter.get_packed_sft_dataset(tokenizer=tok, dataset_path=path, seq_length=9, shuffle=False)
    )
    assert len(rows) > 2
    for (x, y), (x_next, _) in zip(rows, [*rows[1:], (None, None)], strict=True):
        assert y[:-1] == x[1:]
        if x_next is not None:
            assert y[-1] == x_next[0], "windows must be contiguous and non-overlapping"
    eos = tok.eos_token_id
    stream = [t for x, _ in rows for t in x]
    assert stream.count(eos) >= len(RECORDS) - 1, "documents must be separated by EOS"


def _documents_in_stream(stream: list[int], docs: list[list[int]], eos: int) -> list[int]:
    """Indices of ``docs`` in the order they appear in ``stream`` (each doc ends with ``eos`` and has no other
    ``eos``); fails unless the stream is a concatenation of distinct docs followed by a prefix of an unused one."""
    by_tokens = {tuple(d): k for k, d in enumerate(docs)}
    order, piece = [], []
    for t in stream:
        piece.append(t)
        if t == eos:
            k = by_tokens.get(tuple(piece))
            assert k is not None, "the packed stream holds a document that is not in the file"
            assert k not in order, "a document appears twice in the packed stream"
            order.append(k)
            piece = []
    rest = [d for k, d in enumerate(docs) if k not in order]
    assert not piece or any(d[: len(piece)] == piece for d in rest), (
        "the stream's tail is not a document prefix"
    )
    return order


@pytest.mark.points(2)
def test_packed_sft_dataset_shuffle_permutes_whole_documents(adapter, tmp_path):
    tok = gpt2_tokenizer()
    path = _write(tmp_path / "sft.jsonl", RECORDS)
    docs = [document_ids(tok, r["prompt"], r["response"]) for r in RECORDS]
    seq_length = 5
    n_tokens = sum(map(len, docs))
    plain = _rows(
        adapter.get_packed_sft_dataset(tokenizer=tok, dataset_path=path, seq_length=seq_length, shuffle=False)
    )
    shuffled = _rows(
        adapter.get_packed_sft_dataset(tokenizer=tok, dataset_path=path, seq_length=seq_length, shuffle=True)
    )
    assert len(shuffled) == len(plain) == (n_tokens - 1) // seq_length
    for x, y in shuffled:
        assert y[:-1] == x[1:]
    stream = [t for x, _ in shuffled for t in x] + [shuffled[-1][1][-1]]
    order = _documents_in_stream(stream, docs, tok.eos_token_id)
    assert len(order) >= len(docs) - 1
    # 12 documents: the file order comes back by chance with probability 1/12! (about 2e-9)
    assert order != list(range(len(order))), "shuffle=True kept the file order of the documents"
    plain_order = _documents_in_stream([t for x, _ in plain for t in x], docs, tok.eos_token_id)
    assert plain_order == list(range(len(plain_order))), "shuffle=False must keep the file order"


class _ToyDataset(torch.utils.data.Dataset):
    def __init__(self, n: int, seq_length: int) -> None:
        self.rows = torch.arange(n * (seq_length + 1)).reshape(n, seq_length + 1)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[i, :-1], "labels": self.rows[i, 1:]}


def _batches(adapter, ds, batch_size, shuffle):
    it = adapter.run_iterate_batches(dataset=ds, batch_size=batch_size, shuffle=shuffle)
    return it, list(it)


@pytest.mark.points(1)
@pytest.mark.parametrize(("n", "batch_size"), [(10, 4), (12, 3), (3, 8)])
def test_iterate_batches_in_order(adapter, n, batch_size):
    ds = _ToyDataset(n, 6)
    it, batches = _batches(adapter, ds, batch_size, shuffle=False)
    assert len(it) == len(batches) == math.ceil(n / batch_size)
    for k, batch in enumerate(batches):
        rows = range(k * batch_size, min((k + 1) * batch_size, n))
        assert batch["input_ids"].shape == batch["labels"].shape == (len(rows), 6)
        torch.testing.assert_close(batch["input_ids"], torch.stack([ds[i]["input_ids"] for i in rows]))
        torch.testing.assert_close(batch["labels"], torch.stack([ds[i]["labels"] for i in rows]))


@pytest.mark.points(1)
def test_iterate_batches_shuffled_is_a_permutation(adapter):
    n, batch_size = 11, 4
    ds = _ToyDataset(n, 6)
    it, batches = _batches(adapter, ds, batch_size, shuffle=True)
    assert len(it) == len(batches) == 3
    assert [b["input_ids"].shape[0] for b in batches] == [4, 4, 3]
    seen = [
        tuple(row.tolist()) for b in batches for row in torch.cat([b["input_ids"], b["labels"][:, -1:]], 1)
    ]
    assert sorted(seen) == [tuple(r.tolist()) for r in ds.rows], "every item exactly once"
    # 11 items: the identity order comes back by chance with probability 1/11! (about 2.5e-8)
    assert seen != [tuple(r.tolist()) for r in ds.rows], "shuffle=True kept the dataset order"
