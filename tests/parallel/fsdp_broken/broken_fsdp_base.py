"""Shared pieces of the deliberately broken FSDP adapters (each file in this folder is one adapter)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from lmfs.parallel.fsdp import FSDP


class NotAveraged(FSDP):
    """Gradients summed over ranks, not averaged."""

    @torch.no_grad()
    def finish_gradient_synchronization(self) -> None:
        pending, self._pending = self._pending, []
        for rec, work, out in pending:
            work.wait()
            g = out.float()
            rec.param.grad = g if rec.param.grad is None else rec.param.grad.add_(g)


class NoCommunication(FSDP):
    """Each rank keeps its own gradient piece: nothing is reduced."""

    def _reduce_scatter(self, rec, grad) -> None:
        flat = grad.detach().reshape(-1).float()
        padded = flat.new_zeros(rec.shard_numel * self.world_size)
        padded[: rec.numel] = flat
        piece = padded[self.rank * rec.shard_numel : (self.rank + 1) * rec.shard_numel]
        self._pending.append((rec, None, piece * self.world_size))

    @torch.no_grad()
    def finish_gradient_synchronization(self) -> None:
        pending, self._pending = self._pending, []
        for rec, _, out in pending:
            g = out / self.world_size
            rec.param.grad = g if rec.param.grad is None else rec.param.grad.add_(g)


class AllReduceAfterBackward(FSDP):
    """Correct numbers, but no reduce-scatter: whole gradients all-reduced once backward is over."""

    def _reduce_scatter(self, rec, grad) -> None:
        flat = grad.detach().reshape(-1).float()
        padded = flat.new_zeros(rec.shard_numel * self.world_size)
        padded[: rec.numel] = flat
        self._pending.append((rec, None, padded))

    @torch.no_grad()
    def finish_gradient_synchronization(self) -> None:
        pending, self._pending = self._pending, []
        for rec, _, padded in pending:
            dist.all_reduce(padded)
            g = padded[self.rank * rec.shard_numel : (self.rank + 1) * rec.shard_numel] / self.world_size
            rec.param.grad = g.clone() if rec.param.grad is None else rec.param.grad.add_(g)


class MasterInComputeDtype(FSDP):
    """The local master pieces (and so the optimizer's parameters and gradients) kept in compute_dtype."""

    def __init__(self, module, compute_dtype=None) -> None:
        super().__init__(module, compute_dtype=compute_dtype)
        if compute_dtype is not None:
            for rec in self.shards:
                rec.param.data = rec.param.data.to(compute_dtype)

    @torch.no_grad()
    def finish_gradient_synchronization(self) -> None:
        pending, self._pending = self._pending, []
        for rec, work, out in pending:
            work.wait()
            g = (out.float() / self.world_size).to(rec.param.dtype)
            rec.param.grad = g if rec.param.grad is None else rec.param.grad.add_(g)


class KeepsGatheredCopies(FSDP):
    """The autograd graph keeps each full gathered weight until backward (no re-gather, no freeing)."""

    def _pack(self, t):
        return t
