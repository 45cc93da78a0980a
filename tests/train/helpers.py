"""Small fixtures shared by the train tests: a learnable token file and a tiny run config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lmfs.train.config import TrainConfig, config_from_dict

VOCAB = 32


def write_tokens(path: Path, n: int = 6000, seed: int = 0) -> Path:
    """A token file with structure to learn: runs of a rising pattern with a little noise."""
    rng = np.random.default_rng(seed)
    data = np.tile(np.arange(VOCAB), n // VOCAB + 1)[:n]
    noise = rng.random(n) < 0.1
    data[noise] = rng.integers(0, VOCAB, int(noise.sum()))
    np.save(path, data.astype(np.uint16))
    return path


def tiny_config(tmp_path: Path, **overrides: Any) -> TrainConfig:
    """A validated run config; ``overrides`` may name the run's and the model's fields alike (flat)."""
    train = tmp_path / "train.npy"
    valid = tmp_path / "valid.npy"
    if not train.exists():
        write_tokens(train, 6000, seed=0)
        write_tokens(valid, 1500, seed=1)
    values: dict[str, Any] = dict(
        vocab_size=VOCAB,
        context_length=16,
        d_model=32,
        num_layers=2,
        num_heads=4,
        d_ff=64,
        train_data=str(train),
        val_data=str(valid),
        lr=1e-2,
        min_lr=1e-3,
        warmup_iters=3,
        batch_size=8,
        max_steps=12,
        eval_interval=4,
        eval_batches=2,
        log_interval=1,
        ckpt_interval=4,
        keep_checkpoints=2,
        tensorboard=False,
        threads=1,
        seed=0,
        out_dir=str(tmp_path / "run"),
    )
    values.update(overrides)
    return config_from_dict(values).validate()


def tensor_record_span(path: Path) -> tuple[str, int, int]:
    """(record name, offset in the file, length) of the largest tensor's bytes inside a checkpoint archive."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    return info.filename, info.header_offset + 30 + name_len + extra_len, info.file_size


def corrupt_tensor_data(path: Path, n_bytes: int) -> str:
    """Damage the middle of the largest tensor's bytes in place: one flipped bit (``n_bytes=0``) or ``n_bytes``
    bytes XOR 0xFF. Returns the damaged record's name."""
    name, start, size = tensor_record_span(path)
    raw = bytearray(path.read_bytes())
    mid = start + size // 2
    if n_bytes == 0:
        raw[mid] ^= 0x10
    else:
        assert n_bytes <= size
        for i in range(mid - n_bytes // 2, mid - n_bytes // 2 + n_bytes):
            raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    return name
