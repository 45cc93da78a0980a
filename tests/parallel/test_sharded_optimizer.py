"""lmfs.parallel.ShardedOptimizer internals: the assignment, world size 1 without a process group, and one 2-rank
run for lmfs's AdamW, bucketing (split buckets, mixed dtypes, a non-contiguous parameter), a rank that owns
nothing, per-rank checkpoints and the measured optimizer-state memory per rank."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from lmfs.optim import AdamW
from lmfs.parallel import ShardedOptimizer
from lmfs.parallel.sharded_optimizer import assign_to_ranks


def _state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
               if isinstance(v, torch.Tensor))


# ------------------------------------------------------------------------------------------- assignment


def test_assignment_is_largest_first_to_the_least_loaded_rank():
    load = [0, 0]
    assert assign_to_ranks([10, 100, 10, 60, 40], load) == [0, 0, 1, 1, 1]
    assert load == [110, 110]
    assert assign_to_ranks([5], load) == [0] and load == [115, 110]  # later groups continue from the loads
    assert assign_to_ranks([], [0, 0, 0]) == []


def test_assignment_is_balanced_within_the_largest_item():
    g = torch.Generator().manual_seed(0)
    for world in (2, 3, 4):
        numels = torch.randint(1, 1000, (40,), generator=g).tolist()
        load = [0] * world
        owners = assign_to_ranks(numels, load)
        assert owners == assign_to_ranks(numels, [0] * world)  # deterministic
        assert sum(load) == sum(numels) and max(load) - min(load) <= max(numels)


# --------------------------------------------------------------------------- world size 1, no process group


def _problem(seed: int = 0) -> tuple[list[torch.nn.Parameter], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(6, 4), (6,), (3, 6)]]
    return params, torch.randn(10, 4, generator=g), torch.randn(10, 3, generator=g)


def _loss(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    w1, b1, w2 = params
    return ((torch.tanh(x @ w1.T + b1) @ w2.T - y) ** 2).mean()


@pytest.mark.parametrize("cls", [AdamW, torch.optim.AdamW], ids=["lmfs", "torch"])
def test_without_a_process_group_it_is_the_plain_optimizer(cls):
    params, x, y = _problem()
    refs = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = ShardedOptimizer(params, cls, lr=1e-2, weight_decay=0.1)
    ref = cls(refs, lr=1e-2, weight_decay=0.1)
    assert (opt.rank, opt.world_size) == (0, 1) and all(opt.owner(p) == 0 for p in params)
    for _ in range(5):
        for ps, o in ((params, opt), (refs, ref)):
            o.zero_grad()
            _loss(ps, x, y).backward()
            o.step()
    for p, r in zip(params, refs, strict=True):
        torch.testing.assert_close(p, r, rtol=0, atol=0)
    assert _state_bytes(opt) == _state_bytes(ref) > 0
    assert "AdamW, rank 0 of 1" in repr(opt)


def test_closure_runs_once_and_its_loss_is_returned():
    params, x, y = _problem()
    opt = ShardedOptimizer(params, torch.optim.SGD, lr=0.1)
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = _loss(params, x, y)
        loss.backward()
        return loss

    before = params[0].detach().clone()
    loss = opt.step(closure)
    assert len(calls) == 1 and isinstance(loss, torch.Tensor) and loss.requires_grad
    assert not torch.equal(before, params[0])


def test_lr_scheduler_and_added_groups_reach_the_local_optimizer():
    params, x, y = _problem()
    opt = ShardedOptimizer(params[:2], AdamW, lr=1e-2)
    opt.add_param_group({"params": [params[2]], "lr": 0.0, "weight_decay": 0.0})
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: 0.5 ** it)
    frozen = params[2].detach().clone()
    for _ in range(3):
        opt.zero_grad()
        _loss(params, x, y).backward()
        opt.step()
        sched.step()
    assert torch.equal(frozen, params[2])  # lr 0 in its own group
    assert [g["lr"] for g in opt.local_optimizer.param_groups] == pytest.approx([1e-2 * 0.5 ** 2, 0.0])
    with pytest.raises(ValueError):  # the base class's checks still apply
        opt.add_param_group({"params": [params[0]]})


def test_state_dict_roundtrip_resumes_identically():
    params, x, y = _problem()
    opt = ShardedOptimizer(params, AdamW, lr=1e-2, weight_decay=0.1)

    def train(ps, o, n):
        for _ in range(n):
            o.zero_grad()
            _loss(ps, x, y).backward()
            o.step()

    train(params, opt, 3)
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    twin = ShardedOptimizer(twins, AdamW, lr=1e-2, weight_decay=0.1)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    train(params, opt, 3)
    train(twins, twin, 3)
    for p, q in zip(params, twins, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    with pytest.raises(ValueError, match="rank 1 of 2"):
        twin.load_state_dict({**opt.state_dict(), "rank": 1, "world_size": 2})


# ---------------------------------------------------------------------------------------------- 2 ranks


def _two_rank_checks(rank: int, world_size: int) -> dict[str, Any]:
    import torch.distributed as dist

    from lmfs.nn import TransformerConfig, TransformerLM

    out: dict[str, Any] = {}
    # lmfs's AdamW; mixed dtypes, a non-contiguous parameter, buckets split at 256 bytes.
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(8, 8), (8,), (16, 4), (4,), (5,)]]
    params.append(torch.nn.Parameter(torch.randn(6, 3, generator=g).t()))  # non-contiguous (3, 6)
    params.append(torch.nn.Parameter(torch.randn(7, generator=g, dtype=torch.float64)))
    refs = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = ShardedOptimizer(params, AdamW, lr=1e-2, weight_decay=0.1)
    opt.bucket_bytes = 256
    ref = AdamW(refs, lr=1e-2, weight_decay=0.1)
    diffs = []
    for step in range(4):
        for p, r in zip(params, refs, strict=True):
            grad = torch.sin(torch.arange(p.numel(), dtype=p.dtype) * (step + 1)).reshape(p.shape)
            p.grad, r.grad = grad.clone(), grad.clone()
        opt.step()
        ref.step()
        diffs.append(max(float((p - r).detach().abs().max()) for p, r in zip(params, refs, strict=True)))
    out["lmfs_adamw_diff"] = max(diffs)
    out["n_buckets"] = len(opt._buckets())
    out["owners"] = [opt.owner(p) for p in params]
    # Per-rank checkpoint: a twin loaded from this rank's state dict continues identically.
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    twin = ShardedOptimizer(twins, AdamW, lr=1e-2, weight_decay=0.1)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    for o, ps in ((opt, params), (twin, twins)):
        for p in ps:
            p.grad = torch.ones_like(p)
        o.step()
    out["resume_diff"] = max(float((p - q).detach().abs().max()) for p, q in zip(params, twins, strict=True))
    # One parameter, two ranks: rank 1 owns nothing and still takes part in the broadcast.
    lone = torch.nn.Parameter(torch.full((3,), float(rank)))  # differs per rank before the first step
    single = ShardedOptimizer([lone], torch.optim.SGD, lr=0.5)
    lone.grad = torch.ones(3)
    single.step()
    out["lone"] = lone.detach().tolist()
    out["lone_local_is_none"] = single.local_optimizer is None
    # Measured memory: optimizer state bytes per rank vs the unsharded AdamW, on a small Transformer.
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=512, context_length=32, d_model=64, num_layers=2,
                                            num_heads=4, d_ff=192))
    twin_model = copy.deepcopy(model)
    sharded = ShardedOptimizer(model.parameters(), AdamW, lr=1e-3)
    full = AdamW(twin_model.parameters(), lr=1e-3)
    for m, o in ((model, sharded), (twin_model, full)):
        for p in m.parameters():
            p.grad = torch.zeros_like(p)
        o.step()
    counts = torch.tensor([_state_bytes(sharded)], dtype=torch.float64)
    gathered = [torch.zeros_like(counts) for _ in range(world_size)]
    dist.all_gather(gathered, counts)
    out["state_bytes"] = [int(c.item()) for c in gathered]
    out["full_state_bytes"] = _state_bytes(full)
    out["largest_param_bytes"] = max(p.numel() * p.element_size() for p in model.parameters())
    return out


@pytest.fixture(scope="module")
def two_ranks(run_ranks) -> list[dict[str, Any]]:
    return run_ranks(_two_rank_checks, 2, timeout=120)


def test_lmfs_adamw_sharded_matches_unsharded_with_split_buckets(two_ranks):
    for r in two_ranks:
        assert r["lmfs_adamw_diff"] == 0.0
        assert r["n_buckets"] > 3  # split by owner, dtype and the 256-byte cap
    assert two_ranks[0]["owners"] == two_ranks[1]["owners"] and set(two_ranks[0]["owners"]) == {0, 1}


def test_per_rank_checkpoint_resumes_identically(two_ranks):
    assert all(r["resume_diff"] == 0.0 for r in two_ranks)


def test_a_rank_that_owns_nothing_still_receives_the_parameters(two_ranks):
    assert two_ranks[0]["lone"] == two_ranks[1]["lone"] == [-0.5, -0.5, -0.5]  # rank 0's value, stepped
    assert [r["lone_local_is_none"] for r in two_ranks] == [False, True]


def test_each_rank_holds_about_half_the_optimizer_state(two_ranks):
    """The memory claim, measured: AdamW state (m, v, step) bytes per rank vs the unsharded optimizer."""
    r = two_ranks[0]
    per_rank, full = r["state_bytes"], r["full_state_bytes"]
    assert sum(per_rank) == full
    # greedy balance: the ranks differ by at most the largest parameter's m and v (plus the step counters)
    assert max(per_rank) - min(per_rank) <= 2 * r["largest_param_bytes"] + 64
    print(f"\nAdamW state bytes per rank {per_rank} vs unsharded {full}: "
          f"{[round(b / full, 3) for b in per_rank]} of the unsharded")
