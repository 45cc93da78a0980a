"""save/load checkpoint: model and optimizer state restored exactly, the iteration returned."""

from __future__ import annotations

import io

import pytest
import torch


class _TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(10, 16)
        self.fc2 = torch.nn.Linear(16, 3)
        self.register_buffer("running", torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def _trained(steps: int, seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = _TinyNet()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(steps):
        _step(model, opt)
    model.running += 1.5
    return model, opt


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    x = torch.randn(8, 10)
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _assert_same_state(a[k], b[k])
        elif isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k


def _round_trip(adapter, target, iteration: int) -> None:
    model, opt = _trained(5)
    adapter.run_save_checkpoint(model, opt, iteration, target)
    if isinstance(target, io.BytesIO):
        target.seek(0)
    fresh, fresh_opt = _trained(0, seed=123)  # different weights, empty optimizer state
    got = adapter.run_load_checkpoint(target, fresh, fresh_opt)
    assert got == iteration
    _assert_same_state(model.state_dict(), fresh.state_dict())
    _assert_same_state(opt.state_dict()["state"], fresh_opt.state_dict()["state"])
    assert opt.state_dict()["param_groups"] == fresh_opt.state_dict()["param_groups"]
    # and training continues identically from both
    torch.manual_seed(7)
    _step(model, opt)
    torch.manual_seed(7)
    _step(fresh, fresh_opt)
    _assert_same_state(model.state_dict(), fresh.state_dict())


@pytest.mark.points(3)
def test_round_trip_path(adapter, tmp_path) -> None:
    _round_trip(adapter, tmp_path / "ckpt.pt", 1234)


@pytest.mark.points(1)
def test_round_trip_file_object(adapter) -> None:
    _round_trip(adapter, io.BytesIO(), 7)


@pytest.mark.points(1)
def test_overwrite_keeps_newest(adapter, tmp_path) -> None:
    path = tmp_path / "ckpt.pt"
    model, opt = _trained(2)
    adapter.run_save_checkpoint(model, opt, 2, path)
    model2, opt2 = _trained(4)
    adapter.run_save_checkpoint(model2, opt2, 4, path)
    fresh, fresh_opt = _trained(0, seed=9)
    assert adapter.run_load_checkpoint(path, fresh, fresh_opt) == 4
    _assert_same_state(model2.state_dict(), fresh.state_dict())
