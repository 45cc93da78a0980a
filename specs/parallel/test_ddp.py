"""Specs for data-parallel training: DDP with one async all-reduce per parameter, and bucketed DDP.

Each spec spawns 2 CPU ranks (gloo) through the ``run_ranks`` fixture and does all its checks inside the ranks
(an assertion in a rank fails the spec with that rank's traceback). The reference is plain single-process
training of the same model on the *global* batch, computed on every rank from the same seed:

* every rank builds its model from a different seed, so only the broadcast at construction can make the ranks
  start equal (to rank 0's model);
* rank ``r`` trains on its shard ``r`` of each global batch (mean loss over the shard); after every step its
  parameters must equal the reference's (fp32, within 1e-6 abs / 1e-5 rel);
* the model has a frozen parameter (``requires_grad=False``), a buffer, and one ``Parameter`` used by two
  layers (tied weights), so a tied parameter synchronised twice, or a frozen one touched, shows up.

The optimizer is SGD with momentum (written here) on ``ddp_model.parameters()``; the adapter's hooks are
called as in the CS336 training loop (``..._on_train_batch_start`` before the forward,
``..._on_after_backward`` before ``optimizer.step()``).

The overlap specs count the asynchronous all-reduces issued while backward runs by wrapping
``torch.distributed.all_reduce``, so their rank code runs where the submission runs (``run_colocated``: under
``lmfs grade`` in the sandboxed worker, this code sent there by value). The spec's process gives each rank the
initial weights and its part of each global batch (drawn from ``grading_seed``) and checks the parameters the
ranks return against single-process training it does itself; the counts are the submission's word and earn
points only on a run that matched.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

WORLD = 2
LOCAL_BATCH = 4
STEPS = 4
ATOL, RTOL = 1e-6, 1e-5
# bucket sizes in MB: smaller than any parameter (one parameter per bucket), a few parameters per bucket,
# larger than the whole model (one bucket)
BUCKET_SIZES_MB = (1e-6, 0.0015, 100.0)


class ToyNet(nn.Module):
    """Tied weights (``fc2.weight is tied.weight``), a frozen parameter, a buffer; optionally a parameter
    that gets no gradient (declared between used ones, so it shares buckets with them)."""

    def __init__(self, with_unused: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 16)
        self.frozen = nn.Parameter(torch.randn(16), requires_grad=False)
        self.register_buffer("scale", torch.rand(16) + 0.5)
        self.tied = nn.Linear(16, 16)
        if with_unused:
            self.unused = nn.Parameter(torch.randn(12))
        self.fc2 = nn.Linear(16, 16)
        self.fc2.weight = self.tied.weight  # one Parameter, two uses
        self.out = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x) + self.frozen) * self.scale
        h = torch.tanh(self.tied(h))
        h = torch.tanh(self.fc2(h))
        return self.out(h)


def _wrappers(adapter, variant: str, bucket_mb: float | None):
    if variant == "ddp-2026":  # the spring-2026 names: get_ddp is the individual-parameter wrapper
        return adapter.get_ddp, None, adapter.ddp_on_after_backward
    if variant == "individual":
        return (
            adapter.get_ddp_individual_parameters,
            None,
            adapter.ddp_individual_parameters_on_after_backward,
        )
    return (
        lambda m: adapter.get_ddp_bucketed(m, bucket_mb),
        adapter.ddp_bucketed_on_train_batch_start,
        adapter.ddp_bucketed_on_after_backward,
    )


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    # not torch.testing: importing it costs each spawned rank ~1 s
    err = (actual.detach() - expected.detach()).abs()
    bad = err > ATOL + RTOL * expected.detach().abs()
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {err.numel()} elements differ, max abs error {err.max():.3g}"
    )


class SGD:
    """SGD with momentum on a list of parameters (not torch.optim: its first step costs a spawned rank ~1 s).
    Parameters without a gradient are skipped, as in torch.optim."""

    def __init__(self, params: list[nn.Parameter], lr: float = 0.1, momentum: float = 0.9) -> None:
        self.params, self.lr, self.momentum = params, lr, momentum
        self.buf: dict[int, torch.Tensor] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            buf = self.buf.get(i)
            self.buf[i] = buf = p.grad.clone() if buf is None else buf.mul_(self.momentum).add_(p.grad)
            p.sub_(self.lr * buf)


def _train_and_compare(
    rank: int, world: int, adapter, variant: str, bucket_mb: float | None, with_unused: bool
) -> None:
    """Broadcast check, then STEPS steps of DDP vs single-process training on the global batch."""
    tag = f"{variant}" + (f" (bucket_size_mb={bucket_mb})" if bucket_mb is not None else "")
    torch.manual_seed(0)
    reference = ToyNet(with_unused)  # rank 0's model: every rank can build it
    torch.manual_seed(0 if rank == 0 else 1000 + rank)
    model = ToyNet(with_unused)
    if rank > 0:
        assert not torch.equal(model.fc1.weight, reference.fc1.weight), "ranks should start different"
    wrap, on_start, on_after = _wrappers(adapter, variant, bucket_mb)
    ddp = wrap(model)

    ddp_params, ref_params = list(ddp.parameters()), list(reference.parameters())
    assert len(ddp_params) == len(ref_params), f"{tag}: the wrapper must expose the module's parameters"
    for i, (p, q) in enumerate(zip(ddp_params, ref_params, strict=True)):
        assert torch.equal(p.detach(), q.detach()), f"{tag}: rank {rank} parameter {i} differs from rank 0's"
    for i, (b, c) in enumerate(zip(ddp.buffers(), reference.buffers(), strict=True)):
        assert torch.equal(b, c), f"{tag}: rank {rank} buffer {i} differs from rank 0's"

    opt = SGD(ddp_params)
    ref_opt = SGD(ref_params)
    data = torch.Generator().manual_seed(7)
    lo, hi = rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH
    for step in range(STEPS):
        x = torch.randn(world * LOCAL_BATCH, 10, generator=data)
        y = torch.randint(0, 5, (world * LOCAL_BATCH,), generator=data)
        if on_start is not None:
            on_start(ddp, opt)
        opt.zero_grad()
        F.cross_entropy(ddp(x[lo:hi]), y[lo:hi]).backward()
        on_after(ddp, opt)
        opt.step()

        ref_opt.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        ref_opt.step()
        for i, (p, q) in enumerate(zip(ddp_params, ref_params, strict=True)):
            _close(p, q, f"{tag}: rank {rank}, step {step}, parameter {i} vs single-process training")


def _individual_ranks(rank: int, world: int, adapter) -> None:
    _train_and_compare(rank, world, adapter, "individual", None, with_unused=False)


def _bucketed_ranks(rank: int, world: int, adapter) -> None:
    for mb in BUCKET_SIZES_MB:
        _train_and_compare(rank, world, adapter, "bucketed", mb, with_unused=False)


def _ddp_2026_ranks(rank: int, world: int, adapter) -> None:
    _train_and_compare(rank, world, adapter, "ddp-2026", None, with_unused=False)
    _train_and_compare(rank, world, adapter, "ddp-2026", None, with_unused=True)


def _unused_ranks(rank: int, world: int, adapter) -> None:
    _train_and_compare(rank, world, adapter, "individual", None, with_unused=True)
    for mb in BUCKET_SIZES_MB:
        _train_and_compare(rank, world, adapter, "bucketed", mb, with_unused=True)


@pytest.mark.points(4)
def test_ddp_individual_parameters_matches_single_process(adapter, run_ranks):
    """Rank-0 broadcast at construction; then, with tied weights and a frozen parameter, every step equals
    single-process training on the global batch."""
    _need(adapter, "get_ddp_individual_parameters", "ddp_individual_parameters_on_after_backward")
    run_ranks(_individual_ranks, WORLD, adapter)


@pytest.mark.points(4)
def test_ddp_bucketed_matches_single_process(adapter, run_ranks):
    """As above for bucketed DDP, with one parameter per bucket, a few per bucket, and one bucket."""
    _need(adapter, "get_ddp_bucketed", "ddp_bucketed_on_train_batch_start", "ddp_bucketed_on_after_backward")
    run_ranks(_bucketed_ranks, WORLD, adapter)


def _need(adapter, *names: str) -> None:
    for name in names:
        getattr(adapter, name)  # missing is graded "missing", not as a rank's traceback


@pytest.mark.points(4)
def test_ddp_2026_matches_single_process(adapter, run_ranks):
    """The 2026 names (``get_ddp``, ``ddp_on_after_backward``): rank-0 broadcast, then every step equals
    single-process training on the global batch, also with a parameter that gets no gradient."""
    _need(adapter, "get_ddp", "ddp_on_after_backward")
    run_ranks(_ddp_2026_ranks, WORLD, adapter)


@pytest.mark.points(2)
def test_ddp_parameter_without_gradient(adapter, run_ranks):
    """A trainable parameter that gets no gradient (on every rank) neither hangs nor corrupts the step: the
    other parameters still equal single-process training, and it stays unchanged (both wrappers; bucketed
    with the unused parameter alone in a bucket, sharing one, and in the only bucket)."""
    _need(adapter, "get_ddp_individual_parameters", "get_ddp_bucketed")
    run_ranks(_unused_ranks, WORLD, adapter)


# ------------------------------------------------------------------------------ communication starts early


class _Probe(torch.autograd.Function):
    """Identity; its backward runs when backward reaches the model's input, after every later layer's
    gradients, and records how many all-reduces had been issued by then."""

    seen: ClassVar[list[int]] = []
    counter: ClassVar[list[int]] = [0]

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        _Probe.seen.append(_Probe.counter[0])
        return grad


def _count_all_reduce() -> list[int]:
    """Wrap ``torch.distributed.all_reduce`` so that asynchronous calls are counted (this rank only)."""
    counter = [0]
    original = dist.all_reduce

    def counting(tensor, *args, **kwargs):
        if kwargs.get("async_op", False) or (len(args) >= 3 and args[2]):
            counter[0] += 1
        return original(tensor, *args, **kwargs)

    dist.all_reduce = counting
    dist.distributed_c10d.all_reduce = counting
    return counter


OVERLAP_2025 = (("individual", None), ("bucketed", BUCKET_SIZES_MB[0]))
OVERLAP_2026 = (("ddp-2026", None),)
OVERLAP_STEPS = 2
OVERLAP_LR = 0.1


def _overlap_inputs(world: int, seed: int = 0) -> list[dict]:
    """Each rank's inputs: the initial weights (by name) and its part of every global batch."""
    torch.manual_seed(seed)
    state = {k: v.detach().clone() for k, v in ToyNet().state_dict().items()}
    data = torch.Generator().manual_seed(seed + 7)
    batches = [(torch.randn(world * LOCAL_BATCH, 10, generator=data),
                torch.randint(0, 5, (world * LOCAL_BATCH,), generator=data)) for _ in range(OVERLAP_STEPS)]
    return [{"state": state, "shards": [(x[r * LOCAL_BATCH:(r + 1) * LOCAL_BATCH].clone(),
                                         y[r * LOCAL_BATCH:(r + 1) * LOCAL_BATCH].clone()) for x, y in batches]}
            for r in range(world)]


def _overlap_ranks(rank: int, world: int, adapter, variants: tuple = OVERLAP_2025, inputs: dict | None = None
                   ) -> dict:
    """Per variant and step: the all-reduces issued by the time backward reached the input (``seen``), by the
    end of backward (``issued``), and the parameters after the step."""
    if inputs is None:
        inputs = _overlap_inputs(world)[rank]
    counter = _count_all_reduce()
    _Probe.counter = counter
    out = {}
    for variant, mb in variants:
        wrap, on_start, on_after = _wrappers(adapter, variant, mb)
        model = ToyNet()
        model.load_state_dict(inputs["state"])
        ddp = wrap(model)
        opt = SGD(list(ddp.parameters()), lr=OVERLAP_LR)
        rec = {"seen": [], "issued": [], "params": []}
        for x, y in inputs["shards"]:
            if on_start is not None:
                on_start(ddp, opt)
            opt.zero_grad()
            _Probe.seen = []
            counter[0] = 0
            F.cross_entropy(ddp(_Probe.apply(x.clone().requires_grad_(True))), y).backward()
            rec["issued"].append(counter[0])
            rec["seen"].append(_Probe.seen[0] if _Probe.seen else -1)
            on_after(ddp, opt)
            opt.step()
            rec["params"].append([p.detach().clone() for p in ddp.parameters()])
        out[variant] = rec
    return out


def _overlap_reference(world: int, seed: int) -> list[list[torch.Tensor]]:
    """Single-process training on the global batches, in the spec's process: the parameters after each step."""
    torch.manual_seed(seed)
    model = ToyNet()
    data = torch.Generator().manual_seed(seed + 7)
    opt = SGD(list(model.parameters()), lr=OVERLAP_LR)
    steps = []
    for _ in range(OVERLAP_STEPS):
        x = torch.randn(world * LOCAL_BATCH, 10, generator=data)
        y = torch.randint(0, 5, (world * LOCAL_BATCH,), generator=data)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        steps.append([p.detach().clone() for p in model.parameters()])
    return steps


def assert_overlap(results: list, variants: tuple, seed: int) -> None:
    reference = _overlap_reference(len(results), seed)
    n_trainable = len({id(p) for p in ToyNet().parameters() if p.requires_grad})
    for rank, res in enumerate(results):
        for variant, _ in variants:
            rec = res.get(variant) if isinstance(res, dict) else None
            assert isinstance(rec, dict), f"rank {rank}: no result for {variant}"
            seen, issued, params = rec.get("seen"), rec.get("issued"), rec.get("params")
            assert isinstance(params, list) and len(params) == OVERLAP_STEPS, f"{variant}: rank {rank}: no parameters"
            for step, (got, want) in enumerate(zip(params, reference, strict=True)):
                assert isinstance(got, list) and len(got) == len(want) and all(
                    isinstance(p, torch.Tensor) and p.shape == q.shape for p, q in zip(got, want, strict=True)), (
                    f"{variant}: rank {rank}, step {step}: the wrapper's parameters are not the module's")
                for i, (p, q) in enumerate(zip(got, want, strict=True)):
                    _close(p, q, f"{variant}: rank {rank}, step {step}, parameter {i} vs single-process training "
                           "(the all-reduce counts are credited only on a run that matches it)")
            assert isinstance(seen, list) and isinstance(issued, list) and all(
                type(n) is int for n in [*seen, *issued]), f"{variant}: rank {rank}: bad counts {seen} {issued}"
            for s_, n in zip(seen, issued, strict=True):
                assert s_ >= 1, (
                    f"{variant}: no asynchronous all_reduce was issued before backward reached the first layer "
                    f"(communication does not overlap the backward pass)"
                )
                assert n == n_trainable, (
                    f"{variant}: {n} asynchronous all_reduces issued during backward, expected one per "
                    f"trainable parameter ({n_trainable}; the tied parameter once, the frozen one never)"
                )


def _run_overlap(run_colocated, grading_seed: int, variants: tuple) -> None:
    inputs = _overlap_inputs(WORLD, grading_seed)
    results = run_colocated(_overlap_ranks, WORLD, variants, rank_args=[(i,) for i in inputs])
    assert_overlap(results, variants, grading_seed)


@pytest.mark.colocated
@pytest.mark.points(2)
def test_ddp_communication_overlaps_backward(adapter, run_colocated, grading_seed):
    """Both wrappers (bucketed with one parameter per bucket) issue asynchronous all-reduces while backward
    runs: at least one before backward reaches the input layer, one per trainable parameter by the end of
    backward (none left for ``..._on_after_backward`` to start), on a run whose steps equal single-process
    training. Counted by wrapping ``torch.distributed.all_reduce`` (an implementation must call it through the
    ``torch.distributed`` module for this spec to see the calls)."""
    _need(adapter, "get_ddp_individual_parameters", "get_ddp_bucketed")
    _run_overlap(run_colocated, grading_seed, OVERLAP_2025)


@pytest.mark.colocated
@pytest.mark.points(2)
def test_ddp_2026_communication_overlaps_backward(adapter, run_colocated, grading_seed):
    """As above for ``get_ddp``: asynchronous all-reduces issued while backward runs, one per trainable
    parameter."""
    _need(adapter, "get_ddp", "ddp_on_after_backward")
    _run_overlap(run_colocated, grading_seed, OVERLAP_2026)
