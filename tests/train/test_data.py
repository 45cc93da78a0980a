"""Token files (memmapped .npy / .bin) and get_batch's errors and reproducibility."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lmfs.train.data import get_batch, load_tokens, resolve_device


def test_npy_and_bin_load_as_memmaps(tmp_path: Path) -> None:
    ids = (np.arange(1000) * 37 % 50_000).astype(np.uint16)
    np.save(tmp_path / "t.npy", ids)
    ids.tofile(tmp_path / "t.bin")
    for arr in (load_tokens(tmp_path / "t.npy"), load_tokens(tmp_path / "t.bin", dtype="uint16")):
        assert isinstance(arr, np.memmap)
        assert np.array_equal(np.asarray(arr), ids)
    wide = np.arange(10, dtype=np.int32)
    wide.tofile(tmp_path / "w.bin")
    assert np.array_equal(load_tokens(tmp_path / "w.bin", dtype="int32"), wide)


def test_token_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"token file not found: .*missing\.npy"):
        load_tokens(tmp_path / "missing.npy")
    (tmp_path / "odd.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(ValueError, match=r"odd.bin has 3 bytes, not a multiple of 2"):
        load_tokens(tmp_path / "odd.bin")
    np.save(tmp_path / "f.npy", np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match="expected an integer dtype"):
        load_tokens(tmp_path / "f.npy")


def test_too_short_for_the_context_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="has 8 tokens but context_length 8 needs at least 9"):
        get_batch(np.arange(8), 2, 8, "cpu")
    x, y = get_batch(np.arange(9), 2, 8, "cpu")  # exactly enough: the only start is 0
    assert torch.equal(x[0], torch.arange(8)) and torch.equal(y[0], torch.arange(1, 9))


def test_generator_makes_batches_reproducible() -> None:
    data = np.arange(10_000)
    a = get_batch(data, 4, 16, "cpu", generator=torch.Generator().manual_seed(3))
    b = get_batch(data, 4, 16, "cpu", generator=torch.Generator().manual_seed(3))
    c = get_batch(data, 4, 16, "cpu", generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


@pytest.mark.parametrize(
    ("device", "message"),
    [("cuda:99", "not usable"), ("banana", "invalid device"), ("meta", "not supported")],
)
def test_bad_devices(device: str, message: str) -> None:
    if device == "cuda:99" and torch.cuda.device_count() > 99:  # pragma: no cover
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(RuntimeError, match=message):
        resolve_device(device)
