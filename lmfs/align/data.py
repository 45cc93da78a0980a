"""Instruction-tuning data: the Alpaca prompt template, a packed SFT dataset and a batch iterator.

Packing convention (the CS336 assignment 5 one):

* every JSONL record ``{"prompt": ..., "response": ...}`` is formatted with :data:`ALPACA_TEMPLATE`;
* a document's tokens are ``tokenizer.encode(text)`` (so a tokenizer that adds a BOS token, such as Llama 3's,
  starts every document with it) followed by ``tokenizer.eos_token_id``;
* documents are concatenated in file order, or in a random order when ``shuffle`` is set (the documents are
  permuted before packing, never tokens inside a document);
* the stream of N tokens is cut into ``(N - 1) // seq_length`` non-overlapping windows: item ``i`` has
  ``input_ids = stream[i*L:(i+1)*L]`` and ``labels = stream[i*L+1:(i+1)*L+1]``; the incomplete tail is dropped.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{prompt}\n\n### Response:\n{response}"
)


def format_alpaca(prompt: str, response: str) -> str:
    """``prompt`` and ``response`` in the Alpaca template (no EOS)."""
    return ALPACA_TEMPLATE.format(prompt=prompt, response=response)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSONL file (blank lines skipped)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def document_ids(tokenizer: Any, prompt: str, response: str) -> list[int]:
    """One packed document: the tokenizer's ids of the formatted example, then its EOS id."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token")
    return [*list(tokenizer.encode(format_alpaca(prompt, response))), int(eos)]


class PackedSFTDataset(torch.utils.data.Dataset):
    """Fixed-length windows over the concatenated, tokenized documents (see the module docstring)."""

    def __init__(
        self,
        tokenizer: Any,
        dataset_path: str | os.PathLike,
        seq_length: int,
        shuffle: bool,
        seed: int | None = None,
    ) -> None:
        if seq_length < 1:
            raise ValueError(f"seq_length must be >= 1, got {seq_length}")
        records = read_jsonl(dataset_path)
        if shuffle:
            rng = random.Random(seed) if seed is not None else random.Random(random.getrandbits(64))
            rng.shuffle(records)
        stream: list[int] = []
        for rec in records:
            stream.extend(document_ids(tokenizer, rec["prompt"], rec["response"]))
        self.seq_length = seq_length
        self.tokens = torch.tensor(stream, dtype=torch.long)
        self.n_items = max(len(stream) - 1, 0) // seq_length

    def __len__(self) -> int:
        return self.n_items

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if i < 0:
            i += self.n_items
        if not 0 <= i < self.n_items:
            raise IndexError(f"index {i} out of range for {self.n_items} windows")
        start = i * self.seq_length
        return {
            "input_ids": self.tokens[start : start + self.seq_length],
            "labels": self.tokens[start + 1 : start + self.seq_length + 1],
        }


class BatchIterator:
    """Batches of ``batch_size`` items (the last one may be smaller), each a dict of stacked tensors; with
    ``shuffle`` every pass over it draws a new order. ``len()`` is the number of batches."""

    def __init__(self, dataset: Sequence[Mapping[str, Tensor]], batch_size: int, shuffle: bool) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n).tolist() if self.shuffle else list(range(n))
        for start in range(0, n, self.batch_size):
            items = [self.dataset[j] for j in order[start : start + self.batch_size]]
            yield {key: torch.stack([item[key] for item in items]) for key in items[0]}
