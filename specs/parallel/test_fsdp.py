"""Specs for fully sharded data parallelism: ``get_fsdp``, ``fsdp_on_after_backward``, ``fsdp_gather_full_params``
(the spring-2026 course's adapter names), on 2 CPU gloo ranks.

Spawning ranks is the expensive part, so one 2-rank run (a module fixture) performs every check and returns plain
data; each spec asserts on its part. Inside the ranks nothing is asserted: a check that raises is recorded with
its traceback and only the specs that need it fail.

The model is built of this file's own ``Linear`` / ``Embedding`` / ``RMSNorm`` classes (not lmfs's, not
``torch.nn``'s): an embedding tied to the output head, an MLP, a frozen parameter and a buffer. The spec's own
process draws its initial weights and the global batches from ``grading_seed`` (fresh for every graded run) and
hands each rank only the weights and *its* part of each batch; the rank trains on it (SGD with momentum, written
here, on ``fsdp_model.parameters()``, i.e. on whatever local tensors the wrapper exposes) and returns what
``fsdp_gather_full_params`` gave after every step. The reference — one process on the global batch — is computed
in the spec's process, never in a rank, and so are the verdicts on values.

The rank code must run where the submission runs (``run_colocated``; under ``lmfs grade`` that is the sandboxed
worker, and this code travels there by value): communication is observed by wrapping ``torch.distributed``'s
collectives (call them through the ``torch.distributed`` module for these specs to see them), the gathered weights
by weak references taken inside the layers' ``forward``, and the sizes of the local parameters, gradients and
optimizer state there. Those observations are the submission's word (code in its process could change them), so
the specs that rest on them (reduce-scatter during backward, sharded state), and the gather of the weights the
rank was handed, are credited only for a run whose parameters the spec verified itself.
"""

from __future__ import annotations

import copy
import functools
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
LR_FP32, LR_FP16 = 0.1, 0.002
DEFAULT_SEED = 0  # the rank code's inputs when it is run without any (tests of the specs themselves)
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


def _model(seed: int = DEFAULT_SEED) -> ToyLM:
    torch.manual_seed(seed)
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
            if not _Inner.active:  # count the outermost call only
                self.events.append((kind, self.phase, dtype))
                if kind == "reduce_scatter":
                    Probe.counter["reduce_scatter"] += 1
            _Inner.active = True
            try:
                return original(*args, **kwargs)
            finally:
                _Inner.active = False

        call._spec_wrapped = True  # type: ignore[attr-defined]
        return call

    def count(self, kind: str, phase: str) -> int:
        return sum(1 for k, p, _ in self.events if k == kind and p == phase)

    def dtypes(self, kind: str, phase: str) -> list[str]:
        return sorted({d for k, p, d in self.events if k == kind and p == phase})


class _Inner:
    """Set while a wrapped collective runs (one implemented through another is counted once)."""

    active = False


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


# ----------------------------------------------------------------------------------------------- the inputs


def _batches(world: int, seed: int = DEFAULT_SEED) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed + 7)
    out = []
    for _ in range(STEPS):
        ids = torch.randint(0, VOCAB, (world * LOCAL_BATCH, SEQ + 1), generator=g)
        out.append((ids[:, :-1], ids[:, 1:]))
    return out


def _rank_inputs(world: int, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """What each rank gets: the initial weights (parameters and buffer, by name) and its part of every global
    batch — never the other ranks' parts."""
    state = {k: v.detach().clone() for k, v in _model(seed).state_dict().items()}
    per_rank = []
    for rank in range(world):
        lo, hi = rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH
        per_rank.append({"state": state, "shards": [(x[lo:hi].clone(), y[lo:hi].clone())
                                                    for x, y in _batches(world, seed)]})
    return per_rank


# ----------------------------------------------------------------------------------------------- in the ranks


def _local_model(state: dict[str, torch.Tensor]) -> ToyLM:
    model = ToyLM()
    model.load_state_dict(state)
    return model


def _gather(adapter, fsdp_model) -> dict[str, torch.Tensor]:
    full = adapter.fsdp_gather_full_params(fsdp_model)
    return {k: v.detach().clone() for k, v in full.items()}


def _train_fp32(adapter, obs: Collectives, inputs: dict[str, Any]) -> dict[str, Any]:
    fsdp = adapter.get_fsdp(_local_model(inputs["state"]))
    out: dict[str, Any] = {"init": _gather(adapter, fsdp)}
    params = list(fsdp.parameters())
    trainable = [p for p in params if p.requires_grad]
    out["param_elems"] = _elements(trainable)
    out["param_dtypes"] = sorted({str(p.dtype) for p in trainable})
    opt = SGD(params, lr=LR_FP32)
    out["steps"], out["probe"], out["alive_after_forward"] = [], [], []
    for x, y in inputs["shards"]:
        opt.zero_grad()
        Seen.refs.clear()
        obs.phase = "forward"
        loss = _loss(fsdp(x), y)
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
        out["steps"].append(_gather(adapter, fsdp))
    out["opt_grad_dtypes"] = sorted(opt.grad_dtypes)
    out["opt_state_elems"] = _elements(list(opt.buf.values()))
    out["buffers"] = {k: b.detach().clone() for k, b in fsdp.named_buffers()}
    out["gathers_in_forward"] = obs.count("all_gather", "forward")
    out["gathers_in_backward"] = obs.count("all_gather", "backward")
    out["scatters_in_backward"] = obs.count("reduce_scatter", "backward")
    out["scatters_after_backward"] = obs.count("reduce_scatter", "after_backward")
    return out


def _gradient_step(adapter, inputs: dict[str, Any]) -> dict[str, Any]:
    """One backward and an SGD step with lr 1 and no momentum: the parameters move by exactly minus the
    gradient the optimizer saw, which must be the global batch's (the mean over ranks)."""
    fsdp = adapter.get_fsdp(_local_model(inputs["state"]))
    before = _gather(adapter, fsdp)
    opt = SGD(list(fsdp.parameters()), lr=1.0, momentum=0.0)
    x, y = inputs["shards"][0]
    opt.zero_grad()
    _loss(fsdp(x), y).backward()
    adapter.fsdp_on_after_backward(fsdp, opt)
    opt.step()
    return {"before": before, "after": _gather(adapter, fsdp)}


def _train_fp16(adapter, obs: Collectives, inputs: dict[str, Any]) -> dict[str, Any]:
    """compute_dtype=float16: the same steps with the wrapper's low-precision compute."""
    fsdp = adapter.get_fsdp(_local_model(inputs["state"]), compute_dtype=torch.float16)
    params = list(fsdp.parameters())
    trainable = [p for p in params if p.requires_grad]
    out: dict[str, Any] = {"param_dtypes": sorted({str(p.dtype) for p in trainable})}
    opt = SGD(params, lr=LR_FP16)
    obs.events.clear()
    for x, y in inputs["shards"]:
        opt.zero_grad()
        obs.phase = "forward"
        loss = _loss(fsdp(x), y)
        obs.phase = "backward"
        loss.backward()
        obs.phase = "after_backward"
        adapter.fsdp_on_after_backward(fsdp, opt)
        obs.phase = "other"
        opt.step()
    out["final"] = _gather(adapter, fsdp)
    out["opt_grad_dtypes"] = sorted(opt.grad_dtypes)
    out["forward_gather_dtypes"] = obs.dtypes("all_gather", "forward")
    out["backward_scatter_dtypes"] = obs.dtypes("reduce_scatter", "backward")
    return out


def _checks(rank: int, world: int, adapter, names: tuple[str, ...] = ("fp32", "grad", "fp16"),
            inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every run of this rank (``inputs``: this rank's part of :func:`_rank_inputs`; by default those of
    ``DEFAULT_SEED``), each as plain data or ``{"error": traceback}``."""
    if inputs is None:
        inputs = _rank_inputs(world)[rank]
    torch.manual_seed(0)
    obs = _collectives()
    plan = {
        "fp32": lambda: _train_fp32(adapter, obs, inputs),
        "grad": lambda: _gradient_step(adapter, inputs),
        "fp16": lambda: _train_fp16(adapter, obs, inputs),
    }
    results: dict[str, Any] = {}
    for name in names:
        check = plan[name]
        try:
            results[name] = check()
        except Exception:  # recorded; the specs that need it fail with this message
            results[name] = {"error": traceback.format_exc()}
    return results


# ----------------------------------------------------------------------------------------------- the reference


@functools.lru_cache(maxsize=4)
def _reference(world: int, seed: int) -> dict[str, Any]:
    """One process on the global batches, in the spec's own process: the parameters after every fp32 step,
    the first batch's gradient, and the fp16-compute trajectory (fp32 master weights, a float16 copy for
    forward and backward, its gradients cast to fp32 for the step)."""
    batches = _batches(world, seed)
    model = _model(seed)
    out: dict[str, Any] = {
        "init": {n: p.detach().clone() for n, p in model.named_parameters()},
        "scale": model.scale.detach().clone(),
        "full_elems": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "trainable": [n for n, p in model.named_parameters() if p.requires_grad],
    }
    opt = SGD(list(model.parameters()), lr=LR_FP32)
    out["fp32"] = []
    for x, y in batches:
        opt.zero_grad()
        _loss(model(x), y).backward()
        opt.step()
        out["fp32"].append({n: p.detach().clone() for n, p in model.named_parameters()})
    model = _model(seed)
    _loss(model(batches[0][0]), batches[0][1]).backward()
    out["grads"] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    master = _model(seed)
    opt = SGD(list(master.parameters()), lr=LR_FP16)
    for x, y in batches:
        half = copy.deepcopy(master).half()
        _loss(half(x), y).backward()
        for p, h in zip(master.parameters(), half.parameters(), strict=True):
            p.grad = None if h.grad is None else h.grad.float()
        opt.step()
    out["fp16"] = {n: p.detach().clone() for n, p in master.named_parameters()}
    return out


# ----------------------------------------------------------------------------------------------- the verdicts


class RankResults(list):
    """The ranks' results with the seed their inputs were drawn from (a plain list means ``DEFAULT_SEED``)."""

    def __init__(self, results: list[dict[str, Any]], seed: int) -> None:
        super().__init__(results)
        self.seed = seed


def _ref(results: list[dict[str, Any]]) -> dict[str, Any]:
    return _reference(len(results), getattr(results, "seed", DEFAULT_SEED))


@pytest.fixture(scope="module")
def fsdp_ranks(adapter, run_colocated, grading_seed) -> RankResults:
    for name in ("get_fsdp", "fsdp_on_after_backward", "fsdp_gather_full_params"):
        getattr(adapter, name)  # missing is graded "missing", not as a rank's traceback
    inputs = _rank_inputs(WORLD, grading_seed)
    results = run_colocated(_checks, WORLD, rank_args=[(("fp32", "grad", "fp16"), i) for i in inputs],
                            timeout=TIMEOUT)
    return RankResults(results, grading_seed)


def _ok(results: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    per_rank = []
    for rank, res in enumerate(results):
        r = res.get(name) if isinstance(res, dict) else None
        if not isinstance(r, dict):
            pytest.fail(f"rank {rank} returned no result for check {name!r}", pytrace=False)
        if "error" in r:
            pytest.fail(f"rank {rank} raised in check {name!r}:\n{r['error']}", pytrace=False)
        per_rank.append(r)
    return per_rank


def _field(r: dict[str, Any], key: str, kind: type | tuple[type, ...], rank: int) -> Any:
    """A value the rank reported, of the kind the spec expects (anything else fails the spec)."""
    value = r.get(key)
    if not isinstance(value, kind) or (type(value) is bool and kind is int):
        pytest.fail(f"rank {rank}: {key!r} is {type(value).__name__}, expected {kind}", pytrace=False)
    return value


def _gathered(value: Any, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in value.items()):
        pytest.fail(f"{what}: fsdp_gather_full_params must return a dict of name -> tensor", pytrace=False)
    return value


def _compare(full: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Largest error of the gathered parameters against the reference's, by name (names missing or
    misshapen are listed instead)."""
    worst, bad = 0.0, []
    for name, q in ref.items():
        p = full.get(name)
        if p is None or tuple(p.shape) != tuple(q.shape):
            bad.append(f"{name}: {None if p is None else tuple(p.shape)} vs {tuple(q.shape)}")
            continue
        err = (p.float() - q).abs() - RTOL * q.abs()
        worst = max(worst, float(err.max()))
    return {"err": worst, "bad": bad}


def assert_matches_single_process(results: list[dict[str, Any]]) -> None:
    ref = _ref(results)
    per_rank = _ok(results, "fp32")
    runs = []
    for rank, r in enumerate(per_rank):
        steps = _field(r, "steps", list, rank)
        assert len(steps) == STEPS, f"rank {rank}: {len(steps)} gathers for {STEPS} steps"
        steps = [_gathered(full, f"rank {rank}, step {i}") for i, full in enumerate(steps)]
        errs = []
        for i, full in enumerate(steps):
            cmp = _compare(full, ref["fp32"][i])
            assert not cmp["bad"], f"rank {rank}: gathered parameters missing or misshapen: {cmp['bad']}"
            errs.append(cmp["err"])
        assert max(errs) <= ATOL, (
            f"rank {rank}: parameters differ from single-process training on the global batch by {errs} "
            f"(per step; tolerance {ATOL} + {RTOL}·|p|)"
        )
        frozen = steps[-1]["frozen"]
        assert torch.equal(frozen.float(), ref["init"]["frozen"]), "the frozen parameter changed"
        buffers = _field(r, "buffers", dict, rank)
        scale = next((b for k, b in buffers.items() if isinstance(k, str) and k.endswith("scale")), None)
        assert isinstance(scale, torch.Tensor), "the buffer is not exposed by the wrapped module"
        assert scale.shape == ref["scale"].shape and torch.equal(scale.float(), ref["scale"]), "the buffer changed"
        runs.append(steps)
    for rank, steps in enumerate(runs[1:], start=1):
        for i, (mine, first) in enumerate(zip(steps, runs[0], strict=True)):
            differ = [n for n in ref["init"] if not torch.equal(mine[n], first[n])]
            assert not differ, f"step {i}: rank {rank}'s gathered parameters differ from rank 0's: {differ}"


def assert_gradients_averaged(results: list[dict[str, Any]]) -> None:
    ref = _ref(results)
    for rank, r in enumerate(_ok(results, "grad")):
        before = _gathered(r.get("before"), f"rank {rank}, before the step")
        after = _gathered(r.get("after"), f"rank {rank}, after the step")
        for full in (before, after):
            cmp = _compare(full, ref["init"])
            assert not cmp["bad"], f"rank {rank}: gathered parameters missing or misshapen: {cmp['bad']}"
        assert _compare(before, ref["init"])["err"] <= ATOL, f"rank {rank}: the model did not start as given"
        worst = 0.0
        for name, g in ref["grads"].items():
            step = before[name].float() - after[name].float()
            worst = max(worst, float(((step - g).abs() - RTOL * g.abs()).max()))
        assert worst <= ATOL, (
            f"rank {rank}: an SGD step (lr 1) moved the parameters by something other than the global batch's "
            f"gradient (the mean over ranks): max error {worst:.3g}"
        )


def assert_reduce_scatter_during_backward(results: list[dict[str, Any]]) -> None:
    for rank, r in enumerate(_ok(results, "fp32")):
        during = _field(r, "scatters_in_backward", int, rank)
        assert during >= 1, (
            f"rank {rank}: no reduce-scatter issued during backward ({r.get('scatters_after_backward')} after "
            "it): gradients must be reduce-scattered as they become ready"
        )
        probe = _field(r, "probe", list, rank)
        assert len(probe) == STEPS and all(type(n) is int for n in probe), f"rank {rank}: bad probe {probe}"
        assert min(probe) >= 1, (
            f"rank {rank}: no reduce-scatter issued before backward reached the first layer ({probe} per "
            "step): communication does not overlap the backward pass"
        )


def assert_gather_full_params(results: list[dict[str, Any]]) -> None:
    ref = _ref(results)
    for rank, r in enumerate(_ok(results, "fp32")):
        init = _gathered(r.get("init"), f"rank {rank}")
        cmp = _compare(init, ref["init"])
        assert not cmp["bad"], f"rank {rank}: gathered parameters missing or misshapen: {cmp['bad']}"
        assert cmp["err"] <= 0.0, f"rank {rank}: gathered parameters differ from the model's: {cmp}"
        dtypes = {str(init[n].dtype) for n in ref["init"]}
        assert dtypes == {"torch.float32"}, f"rank {rank}: gathered dtypes {dtypes}, expected fp32 master weights"


def assert_state_sharded(results: list[dict[str, Any]]) -> None:
    per_rank = _ok(results, "fp32")
    full = _ref(results)["full_elems"]
    for key in ("param_elems", "grad_elems", "opt_state_elems"):
        got = [_field(r, key, int, rank) for rank, r in enumerate(per_rank)]
        assert max(got) <= 0.6 * full, (
            f"{key}: ranks hold {got} elements of {full} trainable ones; sharded state must be ~1/{WORLD} per rank"
        )
        assert sum(got) >= full, f"{key}: ranks hold {got} elements together, fewer than the model's {full}"
    for rank, r in enumerate(per_rank):
        alive = _field(r, "alive_after_forward", list, rank)
        assert len(alive) == STEPS and None not in alive, (
            f"rank {rank}: the layers saw no full-shaped weight in forward (gathered weights must be full "
            "tensors when the module's forward reads them)"
        )
        assert all(type(a) in (int, float) for a in alive), f"rank {rank}: bad alive fractions {alive}"
        assert max(alive) <= 0.5, (
            f"rank {rank}: after forward {max(alive):.0%} of the gathered weights' bytes are still allocated: the "
            "full copies must be freed after use (and gathered again for backward)"
        )
        assert _field(r, "gathers_in_backward", int, rank) >= 1, f"rank {rank}: no all-gather during backward"


def assert_fp16_compute(results: list[dict[str, Any]]) -> None:
    ref = _ref(results)
    for rank, r in enumerate(_ok(results, "fp16")):
        final = _gathered(r.get("final"), f"rank {rank}")
        cmp = _compare(final, ref["init"])
        assert not cmp["bad"], f"rank {rank}: gathered parameters missing or misshapen: {cmp['bad']}"
        worst, dtypes = 0.0, set()
        for name in ref["trainable"]:
            p, start = final[name], ref["init"][name]
            dtypes.add(str(p.dtype))
            moved_ref = ref["fp16"][name] - start
            moved = p.float() - start
            worst = max(worst, float((moved - moved_ref).abs().max() / moved_ref.abs().max().clamp_min(1e-12)))
        assert dtypes == {"torch.float32"}, f"rank {rank}: gathered {sorted(dtypes)}"
        assert _field(r, "param_dtypes", list, rank) == ["torch.float32"], (
            f"rank {rank}: local parameters are {r['param_dtypes']}"
        )
        assert _field(r, "opt_grad_dtypes", list, rank) == ["torch.float32"], (
            f"rank {rank}: the optimizer saw gradients of {r['opt_grad_dtypes']}; they must be fp32"
        )
        assert _field(r, "forward_gather_dtypes", list, rank) == ["torch.float16"], (
            f"rank {rank}: forward all-gathers moved {r['forward_gather_dtypes']}: cast to compute_dtype first"
        )
        assert worst <= FP16_DELTA_TOL, (
            f"rank {rank}: with fp16 compute the parameters moved {worst:.1%} away from one process doing "
            f"the same casts (fp32 master, fp16 forward/backward; tolerance {FP16_DELTA_TOL:.0%})"
        )


def _credited_only_on_a_verified_run(results: list[dict[str, Any]]) -> None:
    """Counts, sizes and dtypes are observed next to the submission (its word): they earn points only for a
    run whose parameters this process checked against its own reference."""
    try:
        assert_matches_single_process(results)
    except (AssertionError, pytest.fail.Exception) as exc:
        pytest.fail("not credited: the run these observations come from does not match single-process training "
                    f"(see test_fsdp_matches_single_process): {str(exc)[:600]}", pytrace=False)


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
    """Reduce-scatters issued while backward runs, at least one before it reaches the first layer (counted in
    the ranks; credited on a run that matches single-process training)."""
    assert_reduce_scatter_during_backward(fsdp_ranks)
    _credited_only_on_a_verified_run(fsdp_ranks)


@pytest.mark.colocated
@pytest.mark.points(2)
def test_fsdp_gather_full_params(fsdp_ranks):
    """Every parameter under the unwrapped module's name, full shape, fp32, equal to the model's (the rank was
    handed those weights, so this is credited on a run that matches single-process training)."""
    assert_gather_full_params(fsdp_ranks)
    _credited_only_on_a_verified_run(fsdp_ranks)


@pytest.mark.colocated
@pytest.mark.points(3)
def test_fsdp_state_is_sharded(fsdp_ranks):
    """Parameters, gradients and optimizer state per rank are ~1/world of the model's (≤ 0.6 on 2 ranks, all
    of it held somewhere); gathered weights are freed after forward and gathered again in backward (observed in
    the ranks; credited on a run that matches single-process training)."""
    assert_state_sharded(fsdp_ranks)
    _credited_only_on_a_verified_run(fsdp_ranks)


@pytest.mark.colocated
@pytest.mark.points(3)
def test_fsdp_fp16_compute_keeps_fp32_master(fsdp_ranks):
    """compute_dtype=float16: all-gathers move fp16, the optimizer sees fp32 parameters and gradients, and the
    steps follow one process doing the same casts."""
    assert_fp16_compute(fsdp_ranks)
