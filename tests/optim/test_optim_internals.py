"""lmfs.optim internals: foreach vs loop AdamW, skipped parameters, errors, clip's returned norm."""

from __future__ import annotations

import pytest
import torch

from lmfs.optim import AdamW, clip_grad_norm_, cosine_lr


def _train(foreach: bool, steps: int = 30, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(5, 4, generator=g).to(dtype)),
        torch.nn.Parameter(torch.randn(4, generator=g).to(dtype)),
    ]
    opt = AdamW(params, lr=1e-2, weight_decay=0.1, foreach=foreach)
    for i in range(steps):
        for j, p in enumerate(params):
            p.grad = torch.sin(
                torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape) * (i + 1) + j
            ).to(dtype)
        opt.step()
    return [p.detach() for p in params]


def test_foreach_and_loop_paths_agree():
    for a, b in zip(_train(True), _train(False), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_bf16_parameters_step():
    out = _train(False, steps=5, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 and torch.isfinite(p.float()).all() for p in out)


def test_parameters_without_grad_are_untouched_and_get_no_state():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = AdamW([a, b], lr=0.1, weight_decay=0.5)
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(3)) and b not in opt.state
    assert opt.state[a]["step"] == 1 and not torch.equal(a.detach(), torch.ones(3))


def test_param_groups_with_their_own_weight_decay():
    decayed, plain = torch.nn.Parameter(torch.full((2,), 2.0)), torch.nn.Parameter(torch.full((2,), 2.0))
    opt = AdamW(
        [{"params": [decayed], "weight_decay": 0.5}, {"params": [plain], "weight_decay": 0.0}], lr=0.1
    )
    decayed.grad, plain.grad = torch.zeros(2), torch.zeros(2)
    opt.step()
    torch.testing.assert_close(decayed.detach(), torch.full((2,), 2.0 * 0.95))
    torch.testing.assert_close(plain.detach(), torch.full((2,), 2.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [(dict(lr=-1.0), "learning rate"), (dict(betas=(1.0, 0.9)), "betas"), (dict(eps=-1.0), "eps")],
)
def test_adamw_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdamW([torch.nn.Parameter(torch.ones(1))], **kwargs)


def test_clip_returns_pre_clip_norm_like_torch():
    g = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.zeros(3, 3)) for _ in range(3)]
    for p in ours:
        p.grad = torch.randn(3, 3, generator=g) * 10
    theirs = [torch.nn.Parameter(torch.zeros(3, 3)) for _ in range(3)]
    for p, q in zip(theirs, ours, strict=True):
        p.grad = q.grad.clone()
    torch.testing.assert_close(clip_grad_norm_(ours, 1.0), torch.nn.utils.clip_grad_norm_(theirs, 1.0))
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in ours))
    assert total.item() == pytest.approx(1.0, rel=1e-5)


def test_clip_without_grads_returns_zero():
    assert clip_grad_norm_([torch.nn.Parameter(torch.ones(2))], 1.0).item() == 0.0


def test_cosine_lr_edge_cases():
    assert cosine_lr(0, 1.0, 0.1, 0, 10) == pytest.approx(1.0)  # no warmup: starts at max
    assert cosine_lr(5, 1.0, 0.1, 5, 5) == pytest.approx(1.0)  # empty cosine span
    assert cosine_lr(6, 1.0, 0.1, 5, 5) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_iters"):
        cosine_lr(0, 1.0, 0.1, 10, 5)


def test_clip_mixed_dtypes_share_one_norm():
    a = torch.nn.Parameter(torch.zeros(3, dtype=torch.bfloat16))
    b = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))
    a.grad, b.grad = torch.tensor([3.0, 0, 0], dtype=torch.bfloat16), torch.tensor([4.0, 0], dtype=torch.float64)
    assert clip_grad_norm_([a, b], 1.0).item() == pytest.approx(5.0)
    assert a.grad.dtype == torch.bfloat16 and b.grad.dtype == torch.float64
    torch.testing.assert_close(a.grad.float(), torch.tensor([0.6, 0, 0]), rtol=1e-2, atol=0)
    torch.testing.assert_close(b.grad, torch.tensor([0.8, 0], dtype=torch.float64), rtol=1e-6, atol=0)
