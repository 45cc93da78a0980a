"""Fully sharded data parallelism (FSDP, ZeRO-3) from ``torch.distributed`` primitives.

:class:`FSDP` wraps any ``nn.Module`` (lmfs's ``TransformerLM`` or a toy of plain layers). Every distinct trainable
``Parameter`` is flattened, padded to a multiple of the world size and cut into equal pieces: rank ``r`` keeps only
piece ``r``, as an fp32 ``nn.Parameter`` registered where the full parameter was (so ``named_parameters()`` keeps
the unwrapped module's names and order, and an optimizer built on ``fsdp.parameters()`` holds state for 1/world of
the model). Frozen parameters and buffers stay replicated (rank 0's, broadcast at construction).

A *unit* is a module that directly owns sharded parameters (e.g. one ``Linear``). Around each unit's forward:

* a forward pre-hook all-gathers the unit's parameters (cast to ``compute_dtype`` first, so the all-gather moves
  the low-precision bytes) and shadows each name with the full tensor (``module.__dict__[name]``), so the
  module's own ``forward`` reads ``self.weight`` unchanged; floating-point inputs are cast to ``compute_dtype``;
* the forward post-hook drops the shadow. The autograd graph does not keep the gathered copy either: inside the
  wrapper's forward a ``saved_tensors_hooks`` pair replaces every saved tensor that is (a view of) a gathered
  parameter by a small handle, and backward all-gathers the parameter again when it needs it. So between forward
  and backward no full parameter is alive, and in backward only the ones in use;
* the all-gather is an autograd function whose backward launches an asynchronous ``reduce_scatter`` of the
  gradient as soon as autograd has it (communication overlaps the rest of backward). A tied parameter is
  gathered at each use and each use's gradient is reduce-scattered; the pieces add up.

:meth:`FSDP.finish_gradient_synchronization` waits for the reduce-scatters and leaves in each shard's ``.grad``
the fp32 mean over ranks of this rank's piece (added to what ``.grad`` held: gradient accumulation works by
running several backward passes before it). The optimizer then steps the fp32 shards — master weights, the
gradients it sees and its state never leave fp32 whatever ``compute_dtype`` is.

:func:`gather_full_params` (the ``fsdp_gather_full_params`` adapter) all-gathers every sharded parameter into its
full fp32 tensor under the unwrapped names; :meth:`FSDP.full_state_dict` / :meth:`FSDP.load_full_state_dict` and
:func:`gather_optimizer_state` / :func:`shard_optimizer_state` turn the sharded model and optimizer into the
one-process layout and back (checkpoints that any world size, or a single process, can read).

Without a process group the wrapper acts as world size 1 (no communication).

Limit: a parameter must be read through its owner inside that owner's ``forward`` (as every ``Linear`` /
``Embedding`` / ``RMSNorm`` does); code that reads ``child.weight`` from outside the child sees the shard.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


def _all_gather_single(*args: Any, **kwargs: Any) -> Any:
    """torch 2.13 renamed ``all_gather_into_tensor`` (the old name warns); looked up at each call so that
    wrappers installed on ``torch.distributed`` (e.g. by a spec counting collectives) see it."""
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    return fn(*args, **kwargs)


def _reduce_scatter_single(*args: Any, **kwargs: Any) -> Any:
    fn = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    return fn(*args, **kwargs)


def _world(group: Any) -> tuple[bool, int, int]:
    """(communicate?, rank, world size) for ``group`` (the default group when None)."""
    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(group), dist.get_world_size(group)
    return False, 0, 1


@dataclass
class FlatShard:
    """One sharded parameter: its full shape, this rank's fp32 piece, and where the module uses it."""

    name: str  # the first name in the unwrapped module
    aliases: list[str]  # every name (tied weights have several)
    shape: torch.Size
    numel: int
    shard_numel: int  # ceil(numel / world): the last rank's piece may end in padding
    param: nn.Parameter  # this rank's piece, fp32, 1-D of shard_numel elements
    sites: list[tuple[nn.Module, str]] = field(default_factory=list)


class _GatherParam(torch.autograd.Function):
    """forward: the full parameter (all-gathered, in compute dtype); backward: an async reduce-scatter of its
    gradient, waited for by ``finish_gradient_synchronization`` (so this returns no gradient itself)."""

    @staticmethod
    def forward(ctx, shard: Tensor, fsdp: FSDP, rec: FlatShard) -> Tensor:  # type: ignore[override]
        ctx.fsdp, ctx.rec = fsdp, rec
        return fsdp._all_gather(rec)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, None, None]:  # type: ignore[override]
        ctx.fsdp._reduce_scatter(ctx.rec, grad)
        return None, None, None


@dataclass
class _Handle:
    """What a saved gathered parameter becomes while the graph waits for backward."""

    rec: FlatShard
    size: tuple[int, ...]
    stride: tuple[int, ...]
    storage_offset: int


class FSDP(nn.Module):
    """``FSDP(module, compute_dtype=None)``: ``module`` with every trainable parameter sharded 1/world per rank.

    ``forward`` is the module's. Call :meth:`finish_gradient_synchronization` after backward and before
    ``optimizer.step()``. ``compute_dtype`` (e.g. ``torch.float16`` / ``torch.bfloat16``) is the dtype of the
    gathered weights, of the inputs of each unit, and of the gradients while they are reduced.
    """

    def __init__(
        self, module: nn.Module, compute_dtype: torch.dtype | None = None, process_group: Any = None
    ) -> None:
        super().__init__()
        if compute_dtype is not None and not compute_dtype.is_floating_point:
            raise TypeError(f"compute_dtype must be a floating-point dtype, got {compute_dtype}")
        self.module = module
        self.compute_dtype = compute_dtype
        self.group = process_group
        self._comm, self.rank, self.world_size = _world(process_group)
        self._pending: list[tuple[FlatShard, Any, Tensor]] = []
        self._live: dict[int, FlatShard] = {}  # storage address of a gathered parameter -> its record
        self._hooks: list[Any] = []

        if self._comm:  # every rank starts from rank 0's weights and buffers
            with torch.no_grad():
                for t in [*module.parameters(), *module.buffers()]:
                    dist.broadcast(t.data, src=self._global(0), group=self.group)

        sites: dict[int, list[tuple[nn.Module, str, str]]] = {}
        for mod_name, mod in module.named_modules(remove_duplicate=False):
            for attr, p in list(mod._parameters.items()):
                if p is not None and p.requires_grad:
                    full = f"{mod_name}.{attr}" if mod_name else attr
                    sites.setdefault(id(p), []).append((mod, attr, full))
        self.shards: list[FlatShard] = []
        by_param: dict[int, FlatShard] = {}
        for _, p in list(module.named_parameters()):
            if not p.requires_grad or id(p) in by_param:
                continue
            rec = self._shard(p, sites[id(p)])
            by_param[id(p)] = rec
            self.shards.append(rec)
        # one forward pre/post hook pair per unit (a module owning sharded parameters); a tied parameter is
        # gathered by each module that owns it
        self._units: dict[int, tuple[nn.Module, list[tuple[str, FlatShard]]]] = {}
        for rec in self.shards:
            for mod, attr in rec.sites:
                self._units.setdefault(id(mod), (mod, []))[1].append((attr, rec))
        for mod, owned in self._units.values():
            self._hooks.append(mod.register_forward_pre_hook(self._make_pre_hook(owned), with_kwargs=True))
            self._hooks.append(mod.register_forward_hook(self._make_post_hook(owned), always_call=True))

    # ------------------------------------------------------------------------------------------ sharding

    def _global(self, group_rank: int) -> int:
        return group_rank if self.group is None else dist.get_global_rank(self.group, group_rank)

    def _shard(self, p: nn.Parameter, uses: list[tuple[nn.Module, str, str]]) -> FlatShard:
        numel = p.numel()
        per = max(1, math.ceil(numel / self.world_size))
        flat = torch.zeros(per * self.world_size, dtype=torch.float32, device=p.device)
        flat[:numel] = p.detach().reshape(-1).float()
        piece = nn.Parameter(flat[self.rank * per : (self.rank + 1) * per].clone())
        rec = FlatShard(
            name=uses[0][2],
            aliases=[u[2] for u in uses],
            shape=p.shape,
            numel=numel,
            shard_numel=per,
            param=piece,
            sites=[(m, a) for m, a, _ in uses],
        )
        for mod, attr, _ in uses:
            mod._parameters[attr] = piece  # the shard takes the parameter's place (same name, same order)
        return rec

    @property
    def sharded_parameters(self) -> list[nn.Parameter]:
        return [rec.param for rec in self.shards]

    # ------------------------------------------------------------------------------------------ communication

    def _compute(self, t: Tensor) -> Tensor:
        return t if self.compute_dtype is None else t.to(self.compute_dtype)

    def _all_gather(self, rec: FlatShard, dtype: torch.dtype | None = None) -> Tensor:
        """The full parameter (a new tensor), cast to ``dtype`` (default: the compute dtype) before sending."""
        piece = rec.param.detach()
        piece = piece.to(dtype) if dtype is not None else self._compute(piece)
        if not self._comm:
            return piece[: rec.numel].clone().view(rec.shape)
        out = torch.empty(rec.shard_numel * self.world_size, dtype=piece.dtype, device=piece.device)
        _all_gather_single(out, piece.contiguous(), group=self.group)
        return out[: rec.numel].view(rec.shape)

    def _reduce_scatter(self, rec: FlatShard, grad: Tensor) -> None:
        """Launch the reduce-scatter of one use's full gradient (in the compute dtype); sum on this rank's piece."""
        flat = grad.detach().reshape(-1)
        flat = self._compute(flat)
        padded = flat.new_zeros(rec.shard_numel * self.world_size)
        padded[: rec.numel] = flat
        if not self._comm:
            self._pending.append((rec, None, padded))
            return
        out = flat.new_empty(rec.shard_numel)
        work = _reduce_scatter_single(out, padded, op=dist.ReduceOp.SUM, group=self.group, async_op=True)
        self._pending.append((rec, work, out))

    @property
    def num_pending(self) -> int:
        return len(self._pending)

    @torch.no_grad()
    def finish_gradient_synchronization(self) -> None:
        """Wait for the reduce-scatters; each shard's ``.grad`` (fp32) += the mean over ranks of its piece."""
        pending, self._pending = self._pending, []
        for rec, work, out in pending:
            if work is not None:
                work.wait()
            g = out.float().div_(self.world_size)
            if rec.param.grad is None:
                rec.param.grad = g
            else:
                rec.param.grad.add_(g)

    # ------------------------------------------------------------------------------------------ hooks

    def _cast_inputs(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if self.compute_dtype is None:
            return args, kwargs

        def cast(x: Any) -> Any:
            return x.to(self.compute_dtype) if isinstance(x, Tensor) and x.is_floating_point() else x

        return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

    def _make_pre_hook(self, owned: list[tuple[str, FlatShard]]):
        def pre(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            for attr, rec in owned:
                if torch.is_grad_enabled():
                    full = _GatherParam.apply(rec.param, self, rec)
                else:
                    full = self._all_gather(rec)
                module.__dict__[attr] = full
                self._live[full.untyped_storage().data_ptr()] = rec
            return self._cast_inputs(args, kwargs)

        return pre

    def _make_post_hook(self, owned: list[tuple[str, FlatShard]]):
        def post(module: nn.Module, args: tuple, output: Any) -> None:
            for attr, _ in owned:
                full = module.__dict__.pop(attr, None)
                if full is not None:
                    self._live.pop(full.untyped_storage().data_ptr(), None)

        return post

    def _pack(self, t: Tensor) -> Any:
        if not self._live:
            return t
        try:
            rec = self._live.get(t.untyped_storage().data_ptr())
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. some subclasses)
            return t
        if rec is None:
            return t
        return _Handle(rec, tuple(t.size()), tuple(t.stride()), t.storage_offset())

    def _unpack(self, saved: Any) -> Tensor:
        if not isinstance(saved, _Handle):
            return saved
        with torch.no_grad():
            full = self._all_gather(saved.rec)
        return full.as_strided(saved.size, saved.stride, saved.storage_offset)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = self._cast_inputs(args, kwargs)
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            try:
                return self.module(*args, **kwargs)
            finally:
                self._live.clear()

    # ------------------------------------------------------------------------------------------ full state

    @torch.no_grad()
    def gather_full_params(self) -> dict[str, Tensor]:
        """Every parameter of the unwrapped module by name (tied ones under each name): sharded ones
        all-gathered into full fp32 tensors, replicated ones as they are. Collective: call on every rank."""
        out: dict[str, Tensor] = {}
        sharded = {id(rec.param): rec for rec in self.shards}
        for name, p in self.module.named_parameters(remove_duplicate=False):
            rec = sharded.get(id(p))
            if rec is None:
                out[name] = p.detach()
            elif rec.name == name:
                out[name] = self._all_gather(rec, torch.float32)
        for rec in self.shards:  # aliases point at the gathered tensor
            for alias in rec.aliases:
                out[alias] = out[rec.name]
        return out

    def full_state_dict(self) -> dict[str, Tensor]:
        """The unwrapped module's ``state_dict()`` layout (buffers included), with full fp32 parameters."""
        params = self.gather_full_params()
        keys = self.module.state_dict().keys()
        state = self.module.state_dict()
        return {k: params.get(k, state[k]).detach().clone() for k in keys}

    @torch.no_grad()
    def load_full_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a one-process ``state_dict`` (e.g. from :meth:`full_state_dict`): each rank keeps its pieces."""
        sharded = {name: rec for rec in self.shards for name in rec.aliases}
        rest = {k: v for k, v in state.items() if k not in sharded}
        missing = [rec.name for rec in self.shards if rec.name not in state]
        if missing:
            raise KeyError(f"state dict lacks sharded parameters {missing}")
        for rec in self.shards:
            full = state[rec.name]
            if tuple(full.shape) != tuple(rec.shape):
                raise ValueError(f"{rec.name}: shape {tuple(full.shape)} in the state dict, model has {tuple(rec.shape)}")
            rec.param.copy_(self._piece(rec, full))
        own = self.module.state_dict()
        unknown = sorted(set(rest) - set(own))
        if unknown:
            raise KeyError(f"state dict has keys the model lacks: {unknown}")
        for k, v in rest.items():
            own[k].copy_(v)

    def _piece(self, rec: FlatShard, full: Tensor) -> Tensor:
        flat = torch.zeros(rec.shard_numel * self.world_size, dtype=torch.float32, device=rec.param.device)
        flat[: rec.numel] = full.detach().reshape(-1).to(flat.device, torch.float32)
        return flat[self.rank * rec.shard_numel : (self.rank + 1) * rec.shard_numel]

    def extra_repr(self) -> str:
        n = sum(rec.numel for rec in self.shards)
        return f"world_size={self.world_size}, sharded_parameters={len(self.shards)} ({n} elements), " \
               f"compute_dtype={self.compute_dtype}"

    def named_shards(self) -> Iterator[tuple[str, FlatShard]]:
        for rec in self.shards:
            yield rec.name, rec


def gather_full_params(fsdp: FSDP) -> dict[str, Tensor]:
    """The ``fsdp_gather_full_params`` contract: ``{name: full tensor}`` for every parameter of the unwrapped module."""
    return fsdp.gather_full_params()


# ------------------------------------------------------------------------------------------ optimizer state


def _param_names(fsdp: FSDP) -> dict[int, str]:
    return {id(p): name for name, p in fsdp.module.named_parameters()}


@torch.no_grad()
def gather_optimizer_state(fsdp: FSDP, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` in the one-process layout: every state tensor shaped like a shard is
    all-gathered into the full parameter's shape (fp32). Collective: call on every rank."""
    sd = optimizer.state_dict()
    index_to_param = {}
    i = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            index_to_param[i] = p
            i += 1
    recs = {id(rec.param): rec for rec in fsdp.shards}
    state: dict[int, dict[str, Any]] = {}
    # iterate in index order on every rank so the collectives line up
    for idx in sorted(index_to_param):
        p = index_to_param[idx]
        rec = recs.get(id(p))
        entry = sd["state"].get(idx)
        has = torch.tensor([0 if entry is None else 1])
        if fsdp._comm:
            dist.all_reduce(has, op=dist.ReduceOp.MIN, group=fsdp.group)
        if entry is None or not has.item():
            continue
        full_entry = {}
        for k, v in sorted(entry.items()):
            if rec is not None and isinstance(v, Tensor) and v.shape == rec.param.shape:
                fake = FlatShard(rec.name, rec.aliases, rec.shape, rec.numel, rec.shard_numel,
                                 nn.Parameter(v.float(), requires_grad=False))
                full_entry[k] = fsdp._all_gather(fake, torch.float32).clone()
            else:
                full_entry[k] = v
        state[idx] = full_entry
    return {"state": state, "param_groups": sd["param_groups"]}


@torch.no_grad()
def shard_optimizer_state(fsdp: FSDP, optimizer: torch.optim.Optimizer, full: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`gather_optimizer_state`: a state dict for this rank's ``optimizer`` (pass it to
    ``optimizer.load_state_dict``)."""
    index_to_param = {}
    i = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            index_to_param[i] = p
            i += 1
    recs = {id(rec.param): rec for rec in fsdp.shards}
    state: dict[int, dict[str, Any]] = {}
    for idx, entry in full["state"].items():
        rec = recs.get(id(index_to_param[int(idx)]))
        state[int(idx)] = {
            k: fsdp._piece(rec, v).clone()
            if rec is not None and isinstance(v, Tensor) and v.dim() > 0 and v.numel() == rec.numel
            else v
            for k, v in entry.items()
        }
    return {"state": state, "param_groups": full["param_groups"]}


__all__ = ["FSDP", "FlatShard", "gather_full_params", "gather_optimizer_state", "shard_optimizer_state"]
