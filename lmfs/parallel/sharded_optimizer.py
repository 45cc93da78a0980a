"""ZeRO stage 1: optimizer-state sharding over the ranks of a ``torch.distributed`` process group.

:class:`ShardedOptimizer` wraps any ``torch.optim.Optimizer`` class. Every parameter is owned by exactly one
rank; each rank builds ``optimizer_cls`` over the parameters it owns only, so it holds optimizer state (AdamW's
``m`` and ``v``, SGD's momentum buffer, ...) for about ``1/world_size`` of the elements. A step is::

    local optimizer steps the owned parameters      (gradients assumed already averaged, e.g. by DDP)
    for each owner rank: broadcast its parameters   (all ranks end with identical parameters)

so the result equals the unsharded optimizer on every rank, up to float rounding of the optimizer itself.

**Assignment.** Parameters are assigned group by group, as groups are added (the ``Optimizer`` base class adds
the constructor's groups through :meth:`add_param_group`, later groups come the same way). Within a group the
parameters are taken largest first (ties in group order) and each goes to the rank with the fewest elements so
far (ties to the lowest rank): a greedy longest-processing-time balance over the running totals of all groups.
It depends only on the parameters' shapes and order, so every rank computes the same assignment without
communicating (the parameters must be given in the same order on every rank, as with DDP).

**Hyperparameters.** ``param_groups`` are the full groups (all parameters, the group's own settings with
``kwargs`` as defaults). Each rank's local optimizer has one group per wrapper group in which it owns
parameters; before every step the wrapper groups' settings are copied into the local groups, so schedules that
write ``param_groups[i]["lr"]`` work as on the unsharded optimizer.

**Broadcast.** After the local step, the parameters of each owner are flattened per dtype and device into
buckets of at most :attr:`ShardedOptimizer.bucket_bytes`, each broadcast from its owner (a bucket of one
contiguous tensor is broadcast in place, without a copy). Buckets go one at a time, so the extra memory is at
most one bucket.

**Without a process group** (``torch.distributed`` not available or not initialized) the optimizer behaves as
world size 1: one rank owns everything and nothing is broadcast.

**Closures.** ``step(closure)`` evaluates the closure once on every rank (under ``enable_grad``) before the
local step, not inside the local optimizer: a rank may own no parameters, and a closure that runs a DDP
backward must run on every rank. Optimizers that re-evaluate the closure (L-BFGS) are not supported.

**Checkpoints** are per rank: :meth:`state_dict` returns this rank's local optimizer state (with the rank and
the world size); :meth:`load_state_dict` restores it into the same layout.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer


def assign_to_ranks(numels: list[int], load: list[int]) -> list[int]:
    """The rank of each item: largest first (ties in order), each to the rank with the smallest ``load``
    (ties to the lowest rank). ``load`` (elements per rank so far) is updated in place."""
    owners = [0] * len(numels)
    for i in sorted(range(len(numels)), key=lambda i: (-numels[i], i)):
        r = min(range(len(load)), key=lambda k: (load[k], k))
        owners[i] = r
        load[r] += numels[i]
    return owners


def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class ShardedOptimizer(Optimizer):
    """ZeRO-1: ``optimizer_cls(**kwargs)`` over this rank's shard of ``params``; steps broadcast the results.

    ``params`` are tensors or param-group dicts, as for any optimizer. ``owner(p)`` says which rank steps ``p``;
    ``local_optimizer`` is this rank's inner optimizer (``None`` when the rank owns no parameters);
    ``state`` is the local optimizer's state (only this rank's shard).
    """

    bucket_bytes: int = 32 * 2**20  # largest flattened broadcast

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], optimizer_cls: type[Optimizer],
                 **kwargs: Any) -> None:
        # Set before super().__init__: the base class calls add_param_group for each constructor group.
        if _dist_ready():
            self.rank, self.world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            self.rank, self.world_size = 0, 1
        self.optimizer_cls = optimizer_cls
        self._optimizer_kwargs = dict(kwargs)
        self._owner: dict[Tensor, int] = {}
        self._load = [0] * self.world_size  # elements assigned per rank
        self._local_index: list[int | None] = []  # per wrapper group: its index in the local optimizer or None
        self.local_optimizer: Optimizer | None = None
        super().__init__(params, defaults=dict(kwargs))
        self._point_state_at_local()

    # ------------------------------------------------------------------------------------------- assignment

    def owner(self, p: Tensor) -> int:
        """The rank that steps (and broadcasts) parameter ``p``."""
        return self._owner[p]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (validated and defaulted by the base class), assign its parameters to ranks and give
        this rank's share to the local optimizer."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        fresh = list(dict.fromkeys(p for p in group["params"] if p not in self._owner))
        for p, r in zip(fresh, assign_to_ranks([p.numel() for p in fresh], self._load), strict=True):
            self._owner[p] = r
        mine = [p for p in group["params"] if self._owner[p] == self.rank]
        mine = list(dict.fromkeys(mine))  # keep order, drop repeats
        if not mine:
            self._local_index.append(None)
            return
        local = {k: v for k, v in group.items() if k != "params"}
        local["params"] = mine
        if self.local_optimizer is None:
            self.local_optimizer = self.optimizer_cls([local], **self._optimizer_kwargs)
            self._point_state_at_local()
        else:
            self.local_optimizer.add_param_group(local)
        self._local_index.append(len(self.local_optimizer.param_groups) - 1)

    def _point_state_at_local(self) -> None:
        # During the base __init__ the attribute may not exist yet; afterwards `state` is the shard's state.
        if getattr(self, "local_optimizer", None) is not None:
            self.state = self.local_optimizer.state  # type: ignore[assignment]
        elif not isinstance(getattr(self, "state", None), defaultdict):
            self.state = defaultdict(dict)

    # ------------------------------------------------------------------------------------------------- step

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
        """Evaluate ``closure`` (if any), step the owned parameters, broadcast every parameter from its owner."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.local_optimizer is not None:
            local_groups = self.local_optimizer.param_groups
            for group, i in zip(self.param_groups, self._local_index, strict=True):
                if i is not None:
                    local_groups[i].update({k: v for k, v in group.items() if k != "params"})
            self.local_optimizer.step(**kwargs)
        if self.world_size > 1:
            self._broadcast_parameters()
        return loss

    def _buckets(self) -> list[tuple[int, list[Tensor]]]:
        """``(owner, tensors)`` in an order every rank agrees on: by owner, then dtype/device in first-seen
        order, then parameter order; split where a bucket would exceed ``bucket_bytes``."""
        keyed: dict[tuple[int, torch.dtype, torch.device], list[Tensor]] = {}
        seen: set[Tensor] = set()
        for group in self.param_groups:
            for p in group["params"]:
                if p in seen:
                    continue
                seen.add(p)
                keyed.setdefault((self._owner[p], p.dtype, p.device), []).append(p)
        out: list[tuple[int, list[Tensor]]] = []
        for (owner, _, _), tensors in sorted(keyed.items(), key=lambda kv: kv[0][0]):  # stable: keeps first-seen
            bucket: list[Tensor] = []
            size = 0
            for p in tensors:
                nbytes = p.numel() * p.element_size()
                if bucket and size + nbytes > self.bucket_bytes:
                    out.append((owner, bucket))
                    bucket, size = [], 0
                bucket.append(p)
                size += nbytes
            if bucket:
                out.append((owner, bucket))
        return out

    def _broadcast_parameters(self) -> None:
        dist = torch.distributed
        for owner, tensors in self._buckets():
            if len(tensors) == 1 and tensors[0].is_contiguous():
                dist.broadcast(tensors[0].data, src=owner)
                continue
            if owner == self.rank:
                flat = torch.cat([p.data.reshape(-1) for p in tensors])
            else:
                flat = torch.empty(sum(p.numel() for p in tensors), dtype=tensors[0].dtype, device=tensors[0].device)
            dist.broadcast(flat, src=owner)
            if owner != self.rank:
                offset = 0
                for p in tensors:
                    p.data.copy_(flat[offset:offset + p.numel()].view_as(p))
                    offset += p.numel()

    # ------------------------------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """This rank's shard: the local optimizer's state dict, with the rank and world size."""
        local = self.local_optimizer.state_dict() if self.local_optimizer is not None else None
        return {"rank": self.rank, "world_size": self.world_size, "local": local}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` saved by the same rank of a run with the same world size and groups."""
        if (state_dict.get("rank"), state_dict.get("world_size")) != (self.rank, self.world_size):
            raise ValueError(
                f"ShardedOptimizer: state of rank {state_dict.get('rank')} of {state_dict.get('world_size')} "
                f"cannot be loaded on rank {self.rank} of {self.world_size}"
            )
        if (state_dict["local"] is None) != (self.local_optimizer is None):
            raise ValueError("ShardedOptimizer: the saved shard does not match this rank's parameters")
        if self.local_optimizer is not None:
            self.local_optimizer.load_state_dict(state_dict["local"])
            self._point_state_at_local()

    def __repr__(self) -> str:
        return (f"ShardedOptimizer({self.optimizer_cls.__name__}, rank {self.rank} of {self.world_size}, "
                f"{self._load[self.rank]} of {sum(self._load)} elements)")
