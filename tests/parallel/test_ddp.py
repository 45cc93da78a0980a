"""lmfs.parallel.ddp beyond the specs: bucket planning, world size 1, and (in one 2-rank spawn) a
tied-embedding TransformerLM against torch's DistributedDataParallel, gradient accumulation with and without
``no_sync``, parameters used on one rank only (bucketed), and the error on two backward passes in one
round."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
from torch import nn

from lmfs.nn import TransformerConfig, TransformerLM, cross_entropy
from lmfs.optim import AdamW
from lmfs.parallel import DDPBucketed, DDPIndividualParameters
from lmfs.parallel.ddp import MIB, plan_buckets

# ------------------------------------------------------------------------------------------------ bucket plan


def _p(n: int, dtype: torch.dtype = torch.float32) -> nn.Parameter:
    return nn.Parameter(torch.zeros(n, dtype=dtype))


def test_buckets_fill_in_reverse_order_up_to_the_cap():
    a, b, c, d = _p(10), _p(20), _p(30), _p(5)  # 40, 80, 120, 20 bytes
    plan = plan_buckets([a, b, c, d], bucket_bytes=140)
    assert [[id(p) for p in bucket] for bucket in plan] == [[id(d), id(c)], [id(b), id(a)]]


def test_a_parameter_larger_than_the_bucket_gets_its_own():
    a, big, c = _p(4), _p(1000), _p(4)
    plan = plan_buckets([a, big, c], bucket_bytes=64)
    assert [len(b) for b in plan] == [1, 1, 1]
    assert plan[1][0] is big
    assert [len(b) for b in plan_buckets([a, big, c], bucket_bytes=1)] == [1, 1, 1]
    assert [len(b) for b in plan_buckets([a, big, c], bucket_bytes=1e9)] == [3]


def test_a_dtype_change_starts_a_new_bucket():
    plan = plan_buckets([_p(4), _p(4, torch.float64), _p(4, torch.float64)], bucket_bytes=1e9)
    assert [len(b) for b in plan] == [2, 1]


def test_without_a_process_group_the_wrappers_act_as_world_size_1():
    assert not dist.is_initialized()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    x = torch.randn(3, 4)
    for ddp in (DDPIndividualParameters(copy.deepcopy(model)), DDPBucketed(copy.deepcopy(model), 1e-4)):
        assert ddp.world_size == 1
        torch.testing.assert_close(ddp(x), model(x), rtol=0, atol=0)
        ddp(x).sum().backward()
        grads = [p.grad.clone() for p in ddp.parameters()]
        ddp.finish_gradient_synchronization()
        assert all(torch.equal(g, p.grad) for g, p in zip(grads, ddp.parameters(), strict=True))
    assert len(DDPBucketed(model, 1e-6).buckets) == 4  # one parameter each
    assert len(DDPBucketed(model, 1e-4).buckets) == 2  # 104.9 bytes: [8 + 64 + 32 bytes], [128 bytes]
    assert len(DDPBucketed(model, 1.0).buckets) == 1
    assert DDPBucketed(model, 1.0).buckets[0].nbytes == sum(p.numel() * 4 for p in model.parameters())
    assert MIB == 2**20
    with pytest.raises(ValueError, match="bucket_size_mb"):
        DDPBucketed(model, 0)


# ------------------------------------------------------------------------------------------------ 2 ranks

CFG = dict(
    vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64, tie_embeddings=True
)


def _lm(seed: int) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(TransformerConfig(**CFG))


def _batches(world: int, local: int, steps: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [
        torch.randint(0, CFG["vocab_size"], (world * local, CFG["context_length"] + 1), generator=g)
        for _ in range(steps)
    ]


def _lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids[:, :-1])
    return cross_entropy(logits.reshape(-1, CFG["vocab_size"]), ids[:, 1:].reshape(-1))


def _assert_params_close(a: nn.Module, b: nn.Module, what: str, atol: float = 2e-6) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        label = f"{what} {name}"
        torch.testing.assert_close(
            p.detach(), q.detach(), rtol=1e-5, atol=atol, msg=lambda m, w=label: f"{w}: {m}"
        )


def _check_transformer_vs_torch_ddp(rank: int, world: int) -> None:
    """Tied-embedding TransformerLM, lmfs AdamW, 3 steps: both wrappers = torch DDP = one process on the
    global batch."""
    local, steps = 2, 3
    batches = _batches(world, local, steps)
    reference = _lm(0)
    ref_opt = AdamW(reference.parameters(), lr=1e-3, weight_decay=0.1)
    for ids in batches:
        ref_opt.zero_grad(set_to_none=True)
        _lm_loss(reference, ids).backward()
        ref_opt.step()
    assert reference.lm_head.weight is reference.token_embeddings.weight
    lo, hi = rank * local, (rank + 1) * local
    wrappers = {
        "individual": lambda m: DDPIndividualParameters(m),
        "bucketed": lambda m: DDPBucketed(m, bucket_size_mb=0.01),
        "torch-ddp": lambda m: nn.parallel.DistributedDataParallel(m),
    }
    for name, wrap in wrappers.items():
        model = _lm(0 if rank == 0 else 10 + rank)
        ddp = wrap(model)
        opt = AdamW(ddp.parameters(), lr=1e-3, weight_decay=0.1)
        for ids in batches:
            if isinstance(ddp, DDPBucketed):
                ddp.on_train_batch_start()
            opt.zero_grad(set_to_none=True)
            _lm_loss(ddp, ids[lo:hi]).backward()
            if name == "individual":
                assert ddp.num_pending > 0  # launched during backward, not yet waited for
            if hasattr(ddp, "finish_gradient_synchronization"):
                ddp.finish_gradient_synchronization()
                assert ddp.num_pending == 0
            opt.step()
        _assert_params_close(model, reference, f"{name}: rank {rank}")


def _check_gradient_accumulation(rank: int, world: int) -> None:
    """Two micro-batches per step, loss / 2 each: with no_sync on the first, and without (each backward
    communicates; the next forward finishes the round) — both give the global-batch gradient."""
    local = 2
    ids = _batches(world, 2 * local, 1)[0]  # per rank: 2 micro-batches of `local`
    reference = _lm(0)
    _lm_loss(reference, ids).backward()
    mine = ids[rank * 2 * local : (rank + 1) * 2 * local]
    micro = [mine[:local], mine[local:]]
    for wrap in (DDPIndividualParameters, lambda m: DDPBucketed(m, 0.01)):
        for use_no_sync in (True, False):
            ddp = wrap(_lm(0 if rank == 0 else 20 + rank))
            if use_no_sync:
                with ddp.no_sync():
                    (_lm_loss(ddp, micro[0]) / 2).backward()
                assert ddp.num_pending == 0
            else:
                (_lm_loss(ddp, micro[0]) / 2).backward()
            (_lm_loss(ddp, micro[1]) / 2).backward()  # without no_sync: its forward closes the first round
            ddp.finish_gradient_synchronization()
            for (name, p), q in zip(ddp.module.named_parameters(), reference.parameters(), strict=True):
                label = f"{type(ddp).__name__} no_sync={use_no_sync} {name}"
                torch.testing.assert_close(
                    p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=lambda m, w=label: f"{w}: {m}"
                )


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.only_rank0 = nn.Linear(4, 4)
        self.never = nn.Parameter(torch.ones(3))
        self.b = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, use_branch: bool) -> torch.Tensor:
        h = torch.tanh(self.a(x))
        if use_branch:
            h = h + torch.tanh(self.only_rank0(h))
        return self.b(h)


def _check_usage_differs_across_ranks(rank: int, world: int) -> None:
    """Bucketed: a parameter used on rank 0 only gets the mean over ranks (zeros from rank 1); one used
    nowhere keeps grad None — whatever the bucket size."""
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(rank))
    for mb in (1e-6, 1e-4, 10.0):
        torch.manual_seed(0)
        plain = _Branchy()
        ddp = DDPBucketed(copy.deepcopy(plain), mb)
        plain(x, rank == 0).sum().backward()
        local = [torch.zeros_like(p) if p.grad is None else p.grad for p in plain.parameters()]
        expected = []
        for g in local:
            total = g.clone()
            dist.all_reduce(total)
            expected.append(total / world)
        for _ in range(2):
            ddp.on_train_batch_start()
            for p in ddp.parameters():
                p.grad = None
            ddp(x, rank == 0).sum().backward()
            ddp.finish_gradient_synchronization()
            for (name, p), e in zip(ddp.module.named_parameters(), expected, strict=True):
                if name == "never":
                    assert p.grad is None
                else:
                    label = f"bucket {mb} MB, {name}"
                    torch.testing.assert_close(p.grad, e, msg=lambda m, w=label: f"{w}: {m}")


def _check_two_backwards_in_one_round_raise(rank: int, world: int) -> None:
    for wrap in (DDPIndividualParameters, lambda m: DDPBucketed(m, 1e-6)):
        ddp = wrap(_lm(0))
        ids = _batches(1, 2, 1)[0]
        loss = _lm_loss(ddp, ids)
        loss.backward(retain_graph=True)
        with pytest.raises(RuntimeError, match="second backward"):
            loss.backward()
        ddp.finish_gradient_synchronization()  # the first round still completes on every rank
        assert ddp.num_pending == 0


def _all_checks(rank: int, world: int) -> None:
    _check_transformer_vs_torch_ddp(rank, world)
    _check_gradient_accumulation(rank, world)
    _check_usage_differs_across_ranks(rank, world)
    _check_two_backwards_in_one_round_raise(rank, world)


def test_two_ranks(run_ranks):
    run_ranks(_all_checks, 2)
