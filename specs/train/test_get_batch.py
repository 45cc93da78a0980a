"""get_batch: uniform windows over every valid start, targets shifted by one, a bad device raises."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats


def _starts(x: torch.Tensor) -> np.ndarray:
    return x[:, 0].cpu().numpy()


@pytest.mark.points(1)
def test_shapes_dtype_and_shift(adapter) -> None:
    data = np.arange(1000, dtype=np.int64)
    x, y = adapter.run_get_batch(data, batch_size=16, context_length=32, device="cpu")
    assert x.shape == (16, 32) and y.shape == (16, 32)
    assert x.dtype == torch.long and y.dtype == torch.long
    assert x.device.type == "cpu"
    # windows of consecutive tokens, y = x shifted by one position
    assert torch.equal(x[:, 1:] - x[:, :-1], torch.ones(16, 31, dtype=torch.long))
    assert torch.equal(y, x + 1)


@pytest.mark.points(2)
def test_every_valid_start_reachable_and_nothing_else(adapter) -> None:
    n, ctx = 60, 8
    data = np.arange(n, dtype=np.int64)
    torch.manual_seed(0)
    np.random.seed(0)
    seen = np.concatenate(
        [
            _starts(adapter.run_get_batch(data, batch_size=32, context_length=ctx, device="cpu")[0])
            for _ in range(60)
        ]
    )
    # valid starts are 0 .. n - ctx - 1 (the last target is data[n - 1])
    assert set(seen.tolist()) == set(range(n - ctx))


@pytest.mark.points(2)
def test_starts_are_uniform(adapter) -> None:
    n, ctx = 40, 4
    data = np.arange(n, dtype=np.int64)
    torch.manual_seed(1)
    np.random.seed(1)
    seen = np.concatenate(
        [
            _starts(adapter.run_get_batch(data, batch_size=64, context_length=ctx, device="cpu")[0])
            for _ in range(100)
        ]
    )
    counts = np.bincount(seen, minlength=n - ctx)
    assert len(counts) == n - ctx
    # chi-square goodness of fit against the uniform distribution over the 36 valid starts (6400 draws)
    p = stats.chisquare(counts).pvalue
    assert p > 1e-4, (
        f"start positions do not look uniform (chi-square p = {p:.2g}); counts = {counts.tolist()}"
    )


@pytest.mark.points(1)
def test_reads_a_memmap(adapter, tmp_path) -> None:
    path = tmp_path / "tokens.bin"
    arr = np.memmap(path, dtype=np.uint16, mode="w+", shape=(500,))
    arr[:] = np.arange(500) * 7 % 65000
    arr.flush()
    data = np.memmap(path, dtype=np.uint16, mode="r")
    x, y = adapter.run_get_batch(data, batch_size=8, context_length=10, device="cpu")
    assert x.dtype == torch.long
    starts = (x[:, 0] // 7).numpy()
    for row, s in enumerate(starts):
        expect = torch.from_numpy(np.asarray(data[s : s + 11]).astype(np.int64))
        assert torch.equal(x[row], expect[:-1]) and torch.equal(y[row], expect[1:])


@pytest.mark.points(1)
def test_invalid_device_raises(adapter) -> None:
    data = np.arange(100, dtype=np.int64)
    with pytest.raises((RuntimeError, AssertionError, ValueError)):
        adapter.run_get_batch(data, batch_size=4, context_length=8, device="cuda:99")


@pytest.mark.points(2)
def test_property_windows_in_range_and_shifted(adapter) -> None:
    @given(
        n=st.integers(min_value=2, max_value=300),
        ctx_frac=st.floats(min_value=0.0, max_value=1.0),
        batch=st.integers(min_value=1, max_value=9),
        offset=st.integers(min_value=0, max_value=10_000),
    )
    def check(n: int, ctx_frac: float, batch: int, offset: int) -> None:
        ctx = max(1, int(ctx_frac * (n - 1)))  # 1 .. n-1
        data = np.arange(offset, offset + n, dtype=np.int64)
        x, y = adapter.run_get_batch(data, batch_size=batch, context_length=ctx, device="cpu")
        assert x.shape == (batch, ctx) and y.shape == (batch, ctx)
        assert torch.equal(y, x + 1)
        assert int(x.min()) >= offset and int(y.max()) <= offset + n - 1
        assert torch.equal(x - x[:, :1], torch.arange(ctx).expand(batch, ctx))

    check()  # hypothesis runs inside, so the adapter is not mistaken for a test-class instance
