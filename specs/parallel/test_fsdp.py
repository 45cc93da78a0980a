"""Specs for fully sharded data parallelism: ``get_fsdp``, ``fsdp_on_after_backward``, ``fsdp_gather_full_params``
(the spring-2026 course's adapter names), on 2 CPU gloo ranks.

Spawning ranks is the expensive part, so one 2-rank run (a module fixture) performs every check and returns plain
numbers; each spec asserts on its part. Inside the ranks nothing is asserted: a check that raises is recorded with
its traceback and only the specs that need it fail.

The model is built of this file's own ``Linear`` / ``Embedding`` / ``RMSNorm`` classes (not lmfs's, not
``torch.nn``'s): an embedding tied to the output head, an MLP, a frozen parameter and a buffer. Every rank builds
it from the same seed and trains on its part of each global batch (SGD with momentum, written here, on
``fsdp_model.parameters()``, i.e. on whatever local tensors the wrapper exposes); the reference is one process on
the global batch. The adapter is reached only through its functions, and parameters are compared by name through
``fsdp_gather_full_params``. Communication is observed by wrapping ``torch.distributed``'s collectives (call
them through the ``torch.distributed`` module for these specs to see them), and the gathered weights by weak
references taken inside the layers' ``forward``.
"""

from __future__ import annotations

import copy
import traceback
import weakref
from typing import Any, ClassVar

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

WORLD = 2
VOCAB, D, HIDDEN, SEQ = 64, 32, 128, 8
LOCAL_BATCH = 4
STEPS = 3
TIMEOUT = 150
ATOL, RTOL = 1e-5, 1e-4  # fp32: the same sums in another order
FP16_DELTA_TOL = 0.05  # fp16 compute: parameter changes within 5% of the same casts done in one process

# ----------------------------------------------------------------------------------------------- the model

class Seen:
    """The weights the layers saw in forward: (weak reference, the full parameter's shape)."""

    refs: ClassVar[list[tuple[weakref.ref, tuple[int, ...], int]]] = []  # (ref, full shape, bytes if full)

    @staticmethod
    def note(module: nn.Module) -> None:
        import weakref  # here, not at module level: the method may run where only this class was sent

        w = module.weight
        full = tuple(w.shape) == module.full_shape
        Seen.refs.append((weakref.ref(w), module.full_shape, w.numel() * w.element_size() if full else 0))


class Linear(nn.Module):
    def __init__(self, d_in: int, d_out: int, bias: bool = False) -> None:
        super().__init__()
        self.full_shape = (d_out, d_in)
        self.weight = nn.Parameter(torch.randn(d_out, d_in) / d_in**0.5)
        self.bias = nn.Parameter(torch.randn(d_out) * 0.1) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Seen.note(self)
        y = x @ self.weight.t()
        return y if self.bias is None else y + self.bias


class Embedding(nn.Module):
    def __init__(self, n: int, d: int) -> None:
        super().__init__()
        self.full_shape = (n, d)
        self.weight = nn.Parameter(torch.randn(n, d) * 0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        Seen.note(self)
        return self.weight[ids]


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.full_shape = (d,)
        self.eps = eps
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Seen.note(self)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Probe(torch.autograd.Function):
    """Identity; its backward runs when backward reaches the embedding's output (after every later layer) and
    records how many reduce-scatters had been issued by then."""

    counter: ClassVar[dict[str, int]] = {"reduce_scatter": 0}
    seen: ClassVar[list[int]] = []

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        Probe.seen.append(Probe.counter["reduce_scatter"])
        return grad


class ToyLM(nn.Module):
    """Embedding tied to the head, pre-norm MLP residual, a frozen parameter and a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = Embedding(VOCAB, D)
        self.norm1 = RMSNorm(D)
        self.fc1 = Linear(D, HIDDEN, bias=True)
        self.fc2 = Linear(HIDDEN, D)
        self.frozen = nn.Parameter(0.1 * torch.randn(D), requires_grad=False)
        self.register_buffer("scale", torch.rand(D) + 0.5)
        self.norm2 = RMSNorm(D)
        self.head = Linear(D, VOCAB)
        self.head.weight = self.emb.weight  # one Parameter, two uses

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = Probe.apply(self.emb(ids))
        h = h + self.fc2(torch.relu(self.fc1(self.norm1(h))))
        h = h * self.scale + self.frozen
        return self.head(self.norm2(h))


def _model() -> ToyLM:
    torch.manual_seed(0)
    return ToyLM()


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().reshape(-1, VOCAB), targets.reshape(-1))


class SGD:
    """SGD with momentum; parameters without a gradient are skipped. Records the dtypes it was given."""

    def __init__(self, params: list[nn.Parameter], lr: float, momentum: float = 0.9) -> None:
        self.params, self.lr, self.momentum = params, lr, momentum
        self.buf: dict[int, torch.Tensor] = {}
        self.param_groups = [{"params": params, "lr": lr}]  # what a hook may look at
        self.grad_dtypes: set[str] = set()

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            self.grad_dtypes.add(str(p.grad.dtype))
            buf = self.buf.get(i)
            self.buf[i] = buf = p.grad.clone() if buf is None else buf.mul_(self.momentum).add_(p.grad)
            p.sub_(self.lr * buf)


# ----------------------------------------------------------------------------------------------- observing


_GATHERS = ("all_gather", "all_gather_into_tensor", "all_gather_single", "_all_gather_base")
_SCATTERS = ("reduce_scatter", "reduce_scatter_tensor", "reduce_scatter_single", "_reduce_scatter_base")


class Collectives:
    """Wraps torch.distributed's all-gathers and reduce-scatters; records (kind, phase, dtype) per call."""

    def __init__(self) -> None:
        self.phase = "other"
        self.events: list[tuple[str, str, str]] = []
        for name in (*_GATHERS, *_SCATTERS):
            original = getattr(dist, name, None)
            if original is None or getattr(original, "_spec_wrapped", False):
                continue
            kind = "all_gather" if name in _GATHERS else "reduce_scatter"
            wrapped = self._wrap(original, kind)
            setattr(dist, name, wrapped)
            setattr(dist.distributed_c10d, name, wrapped)

    def _wrap(self, original, kind: str):
        def call(*args, **kwargs):
            src = args[1] if len(args) > 1 else kwargs.get("input_tensor", kwargs.get("input", kwargs.get("tensor")))
            if isinstance(src, (list, tuple)):
                src = src[0] if src else None
            dtype = str(src.dtype) if isinstance(src, torch.Tensor) else "?"
            if not getattr(COLLECTIVES_INNER, "active", False):  # count the outermost call only
                self.events.append((kind, self.phase, dtype))
                if kind == "reduce_scatter":
                    Probe.counter["reduce_scatter"] += 1
            COLLECTIVES_INNER.active = True
            try:
                return original(*args, **kwargs)
            finally:
                COLLECTIVES_INNER.active = False

        call._spec_wrapped = True  # type: ignore[attr-defined]
        return call

    def count(self, kind: str, phase: str) -> int:
        return sum(1 for k, p, _ in self.events if k == kind and p == phase)

    def dtypes(self, kind: str, phase: str) -> list[str]:
        return sorted({d for k, p, d in self.events if k == kind and p == phase})


class _Inner:
    active = False


COLLECTIVES_INNER = _Inner()
_OBSERVER: list[Collectives] = []


def _collectives() -> Collectives:
    """This process's observer (the wrappers are installed once; each run starts with no events)."""
    if not _OBSERVER:
        _OBSERVER.append(Collectives())
    obs = _OBSERVER[0]
    obs.events.clear()
    obs.phase = "other"
    return obs


def _alive_gathered_fraction() -> float | None:
    """Of the full-shaped weights the layers saw in the last forward, the share of bytes still allocated
    (None when the layers saw no full-shaped weight in this process)."""
    total = alive = 0
    for ref, shape, nbytes in Seen.refs:
        total += nbytes
        t = ref()
        if nbytes and t is not None and tuple(t.shape) == shape and t.untyped_storage().nbytes() > 0:
            alive += nbytes
    return alive / total if total else None


def _elements(tensors: list[torch.Tensor | None]) -> int:
    return sum(t.numel() for t in tensors if t is not None)


# ----------------------------------------------------------------------------------------------- in the ranks


def _batches(world: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    out = []
    for _ in range(STEPS):
        ids = torch.randint(0, VOCAB, (world * LOCAL_BATCH, SEQ + 1), generator=g)
        out.append((ids[:, :-1], ids[:, 1:]))
    return out


def _gather(adapter, fsdp_model) -> dict[str, torch.Tensor]:
    full = adapter.fsdp_gather_full_params(fsdp_model)
    return {k: v.detach().clone() for k, v in full.items()}


def _compare(full: dict[str, torch.Tensor], ref: nn.Module) -> dict[str, Any]:
    """Largest error of the gathered parameters against the reference's, by name (names missing or
    misshapen are listed instead)."""
    worst, bad = 0.0, []
    for name, q in ref.named_parameters():
        p = full.get(name)
        if p is None or tuple(p.shape) != tuple(q.shape):
            bad.append(f"{name}: {None if p is None else tuple(p.shape)} vs {tuple(q.shape)}")
            continue
        err = (p.float() - q.detach()).abs() - RTOL * q.detach().abs()
        worst = max(worst, float(err.max()))
    return {"err": worst, "bad": bad}


def _spread(full: dict[str, torch.Tensor], names: list[str]) -> float:
    flat = torch.cat([full[n].float().reshape(-1) for n in names if n in full])
    copies = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(copies, flat)
    return max(float((c - copies[0]).abs().max()) for c in copies)


def _train_fp32(adapter, rank: int, world: int, obs: Collectives) -> dict[str, Any]:
    ref = _model()
    fsdp = adapter.get_fsdp(_model())
    names = [n for n, _ in ref.named_parameters()]
    out: dict[str, Any] = {}
    full0 = _gather(adapter, fsdp)
    out["init"] = _compare(full0, ref)
    out["gathered"] = {n: [list(full0[n].shape), str(full0[n].dtype)] for n in names if n in full0}
    params = list(fsdp.parameters())
    trainable = [p for p in params if p.requires_grad]
    n_full = sum(p.numel() for p in ref.parameters() if p.requires_grad)
    out["param_elems"], out["full_elems"] = _elements(trainable), n_full
    out["param_dtypes"] = sorted({str(p.dtype) for p in trainable})
    opt, ref_opt = SGD(params, lr=0.1), SGD(list(ref.parameters()), lr=0.1)
    lo, hi = rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH
    out["errs"], out["spread"], out["probe"], out["alive_after_forward"] = [], [], [], []
    for x, y in _batches(world):
        opt.zero_grad()
        Seen.refs.clear()
        obs.phase = "forward"
        loss = _loss(fsdp(x[lo:hi]), y[lo:hi])
        out["alive_after_forward"].append(_alive_gathered_fraction())
        obs.phase = "backward"
        Probe.seen, Probe.counter["reduce_scatter"] = [], 0
        loss.backward()
        out["probe"].append(Probe.seen[0] if Probe.seen else -1)
        obs.phase = "after_backward"
        adapter.fsdp_on_after_backward(fsdp, opt)
        out["grad_elems"] = _elements([p.grad for p in trainable])
        obs.phase = "other"
        opt.step()
        ref_opt.zero_grad()
        _loss(ref(x), y).backward()
        ref_opt.step()
        full = _gather(adapter, fsdp)
        cmp = _compare(full, ref)
        out["errs"].append(cmp["err"])
        out["bad"] = cmp["bad"]
        out["spread"].append(_spread(full, names))
    out["opt_grad_dtypes"] = sorted(opt.grad_dtypes)
    out["opt_state_elems"] = _elements(list(opt.buf.values()))
    out["frozen_err"] = float((full["frozen"] - ref.frozen).abs().max()) if "frozen" in full else None
    scale = dict(fsdp.named_buffers())
    buf = next((b for k, b in scale.items() if k.endswith("scale")), None)
    out["buffer_err"] = None if buf is None else float((buf - ref.scale).abs().max())
    out["gathers_in_forward"] = obs.count("all_gather", "forward")
    out["gathers_in_backward"] = obs.count("all_gather", "backward")
    out["scatters_in_backward"] = obs.count("reduce_scatter", "backward")
    out["scatters_after_backward"] = obs.count("reduce_scatter", "after_backward")
    return out


def _gradient_step(adapter, rank: int, world: int) -> dict[str, Any]:
    """One backward and an SGD step with lr 1 and no momentum: the parameters move by exactly minus the
    gradient the optimizer saw, which must be the global batch's (the mean over ranks)."""
    ref = _model()
    fsdp = adapter.get_fsdp(_model())
    before = _gather(adapter, fsdp)
    opt = SGD(list(fsdp.parameters()), lr=1.0, momentum=0.0)
    x, y = _batches(world)[0]
    lo, hi = rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH
    opt.zero_grad()
    _loss(fsdp(x[lo:hi]), y[lo:hi]).backward()
    adapter.fsdp_on_after_backward(fsdp, opt)
    opt.step()
    after = _gather(adapter, fsdp)
    _loss(ref(x), y).backward()
    worst, bad = 0.0, []
    for name, q in ref.named_parameters():
        if q.grad is None:
            continue
        if name not in after or tuple(after[name].shape) != tuple(q.shape):
            bad.append(name)
            continue
        step = before[name].float() - after[name].float()
        worst = max(worst, float(((step - q.grad).abs() - RTOL * q.grad.abs()).max()))
    return {"err": worst, "bad": bad}


def _train_fp16(adapter, rank: int, world: int, obs: Collectives) -> dict[str, Any]:
    """compute_dtype=float16 against one process doing the same casts: fp32 master weights, a float16 copy
    for forward and backward, its gradients cast to fp32 for the step."""
    master = _model()
    start = {n: p.detach().clone() for n, p in master.named_parameters()}
    fsdp = adapter.get_fsdp(_model(), compute_dtype=torch.float16)
    params = list(fsdp.parameters())
    trainable = [p for p in params if p.requires_grad]
    out: dict[str, Any] = {"param_dtypes": sorted({str(p.dtype) for p in trainable})}
    lr = 0.002
    opt, ref_opt = SGD(params, lr=lr), SGD(list(master.parameters()), lr=lr)
    lo, hi = rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH
    obs.events.clear()
    for x, y in _batches(world):
        opt.zero_grad()
        obs.phase = "forward"
        loss = _loss(fsdp(x[lo:hi]), y[lo:hi])
        obs.phase = "backward"
        loss.backward()
        obs.phase = "after_backward"
        adapter.fsdp_on_after_backward(fsdp, opt)
        obs.phase = "other"
        opt.step()
        half = copy.deepcopy(master).half()
        _loss(half(x), y).backward()
        for p, h in zip(master.parameters(), half.parameters(), strict=True):
            p.grad = None if h.grad is None else h.grad.float()
        ref_opt.step()
    full = _gather(adapter, fsdp)
    worst, bad, dtypes = 0.0, [], set()
    for name, q in master.named_parameters():
        if not q.requires_grad:
            continue
        p = full.get(name)
        if p is None or tuple(p.shape) != tuple(q.shape):
            bad.append(name)
            continue
        dtypes.add(str(p.dtype))
        moved_ref = q.detach() - start[name]
        moved = p.float() - start[name]
        worst = max(worst, float((moved - moved_ref).abs().max() / moved_ref.abs().max().clamp_min(1e-12)))
    out.update(delta_err=worst, bad=bad, gathered_dtypes=sorted(dtypes))
    out["opt_grad_dtypes"] = sorted(opt.grad_dtypes)
    out["forward_gather_dtypes"] = obs.dtypes("all_gather", "forward")
    out["backward_scatter_dtypes"] = obs.dtypes("reduce_scatter", "backward")
    return out


def _checks(rank: int, world: int, adapter, names: tuple[str, ...] = ("fp32", "grad", "fp16")) -> dict[str, Any]:
    torch.manual_seed(0)
    obs = _collectives()
    plan = {
        "fp32": lambda: _train_fp32(adapter, rank, world, obs),
        "grad": lambda: _gradient_step(adapter, rank, world),
        "fp16": lambda: _train_fp16(adapter, rank, world, obs),
    }
    results: dict[str, Any] = {}
    for name in names:
        check = plan[name]
        try:
            results[name] = check()
        except Exception:  # recorded; the specs that need it fail with this message
            results[name] = {"error": traceback.format_exc()}
    return results


# ----------------------------------------------------------------------------------------------- the specs


@pytest.fixture(scope="module")
def fsdp_ranks(adapter, run_ranks) -> list[dict[str, Any]]:
    for name in ("get_fsdp", "fsdp_on_after_backward", "fsdp_gather_full_params"):
        getattr(adapter, name)  # missing is graded "missing", not as a rank's traceback
    return run_ranks(_checks, WORLD, adapter, timeout=TIMEOUT)


def _ok(results: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    per_rank = [r[name] for r in results]
    for rank, r in enumerate(per_rank):
        if "error" in r:
            pytest.fail(f"rank {rank} raised in check {name!r}:\n{r['error']}", pytrace=False)
    return per_rank


def assert_matches_single_process(results: list[dict[str, Any]]) -> None:
    for rank, r in enumerate(_ok(results, "fp32")):
        assert not r["bad"], f"rank {rank}: gathered parameters missing or misshapen: {r['bad']}"
        assert max(r["errs"]) <= ATOL, (
            f"rank {rank}: parameters differ from single-process training on the global batch by {r['errs']} "
            f"(per step; tolerance {ATOL} + {RTOL}·|p|)"
        )
        assert max(r["spread"]) == 0.0, f"ranks' gathered parameters differ after steps: {r['spread']}"
        assert r["frozen_err"] == 0.0, f"the frozen parameter changed (or is missing): {r['frozen_err']}"
        assert r["buffer_err"] == 0.0, f"the buffer changed (or is not exposed): {r['buffer_err']}"


def assert_gradients_averaged(results: list[dict[str, Any]]) -> None:
    for rank, r in enumerate(_ok(results, "grad")):
        assert not r["bad"], f"rank {rank}: gathered parameters missing or misshapen: {r['bad']}"
        assert r["err"] <= ATOL, (
            f"rank {rank}: an SGD step (lr 1) moved the parameters by something other than the global batch's "
            f"gradient (the mean over ranks): max error {r['err']:.3g}"
        )


def assert_reduce_scatter_during_backward(results: list[dict[str, Any]]) -> None:
    for rank, r in enumerate(_ok(results, "fp32")):
        assert r["scatters_in_backward"] >= 1, (
            f"rank {rank}: no reduce-scatter issued during backward ({r['scatters_after_backward']} after it): "
            "gradients must be reduce-scattered as they become ready"
        )
        assert min(r["probe"]) >= 1, (
            f"rank {rank}: no reduce-scatter issued before backward reached the first layer ({r['probe']} per "
            "step): communication does not overlap the backward pass"
        )


def assert_gather_full_params(results: list[dict[str, Any]]) -> None:
    for rank, r in enumerate(_ok(results, "fp32")):
        assert not r["init"]["bad"], f"rank {rank}: gathered parameters missing or misshapen: {r['init']['bad']}"
        assert r["init"]["err"] <= 0.0, f"rank {rank}: gathered parameters differ from the model's: {r['init']}"
        dtypes = {d for _, d in r["gathered"].values()}
        assert dtypes == {"torch.float32"}, f"rank {rank}: gathered dtypes {dtypes}, expected fp32 master weights"


def assert_state_sharded(results: list[dict[str, Any]]) -> None:
    per_rank = _ok(results, "fp32")
    full = per_rank[0]["full_elems"]
    for key in ("param_elems", "grad_elems", "opt_state_elems"):
        got = [r[key] for r in per_rank]
        assert max(got) <= 0.6 * full, (
            f"{key}: ranks hold {got} elements of {full} trainable ones; sharded state must be ~1/{WORLD} per rank"
        )
        assert sum(got) >= full, f"{key}: ranks hold {got} elements together, fewer than the model's {full}"
    for rank, r in enumerate(per_rank):
        assert None not in r["alive_after_forward"], (
            f"rank {rank}: the layers saw no full-shaped weight in forward (gathered weights must be full "
            "tensors when the module's forward reads them)"
        )
        alive = max(r["alive_after_forward"])
        assert alive <= 0.5, (
            f"rank {rank}: after forward {alive:.0%} of the gathered weights' bytes are still allocated: the full "
            "copies must be freed after use (and gathered again for backward)"
        )
        assert r["gathers_in_backward"] >= 1, f"rank {rank}: no all-gather during backward"


def assert_fp16_compute(results: list[dict[str, Any]]) -> None:
    for rank, r in enumerate(_ok(results, "fp16")):
        assert not r["bad"], f"rank {rank}: gathered parameters missing or misshapen: {r['bad']}"
        assert r["param_dtypes"] == ["torch.float32"], f"rank {rank}: local parameters are {r['param_dtypes']}"
        assert r["gathered_dtypes"] == ["torch.float32"], f"rank {rank}: gathered {r['gathered_dtypes']}"
        assert r["opt_grad_dtypes"] == ["torch.float32"], (
            f"rank {rank}: the optimizer saw gradients of {r['opt_grad_dtypes']}; they must be fp32"
        )
        assert r["forward_gather_dtypes"] == ["torch.float16"], (
            f"rank {rank}: forward all-gathers moved {r['forward_gather_dtypes']}: cast to compute_dtype first"
        )
        assert r["delta_err"] <= FP16_DELTA_TOL, (
            f"rank {rank}: with fp16 compute the parameters moved {r['delta_err']:.1%} away from one process doing "
            f"the same casts (fp32 master, fp16 forward/backward; tolerance {FP16_DELTA_TOL:.0%})"
        )


@pytest.mark.colocated
@pytest.mark.points(4)
def test_fsdp_matches_single_process(fsdp_ranks):
    """fp32: after every step the gathered parameters equal one process on the global batch (tied weights, a
    frozen parameter and a buffer unchanged), and every rank gathers the same."""
    assert_matches_single_process(fsdp_ranks)


@pytest.mark.colocated
@pytest.mark.points(2)
def test_fsdp_gradients_are_the_mean_over_ranks(fsdp_ranks):
    assert_gradients_averaged(fsdp_ranks)


@pytest.mark.colocated
@pytest.mark.points(2)
def test_fsdp_gradients_reduce_scattered_during_backward(fsdp_ranks):
    assert_reduce_scatter_during_backward(fsdp_ranks)


@pytest.mark.colocated
@pytest.mark.points(2)
def test_fsdp_gather_full_params(fsdp_ranks):
    """Every parameter under the unwrapped module's name, full shape, fp32, equal to the model's."""
    assert_gather_full_params(fsdp_ranks)


@pytest.mark.colocated
@pytest.mark.points(3)
def test_fsdp_state_is_sharded(fsdp_ranks):
    """Parameters, gradients and optimizer state per rank are ~1/world of the model's (≤ 0.6 on 2 ranks, all
    of it held somewhere); gathered weights are freed after forward and gathered again in backward."""
    assert_state_sharded(fsdp_ranks)


@pytest.mark.colocated
@pytest.mark.points(3)
def test_fsdp_fp16_compute_keeps_fp32_master(fsdp_ranks):
    """compute_dtype=float16: all-gathers move fp16, the optimizer sees fp32 parameters and gradients, and the
    steps follow one process doing the same casts."""
    assert_fp16_compute(fsdp_ranks)
