"""Data-parallel training from ``torch.distributed`` primitives: gradients all-reduced while backward runs.

Two wrappers, both ``torch.nn.Module``\\ s whose ``forward`` is the wrapped module's:

* :class:`DDPIndividualParameters` launches one asynchronous all-reduce per parameter, from that parameter's
  post-accumulate-grad hook, i.e. as soon as its gradient for this backward pass is complete;
* :class:`DDPBucketed` groups the parameters into buckets of at most ``bucket_size_mb`` MiB and launches one
  all-reduce of a flattened copy per bucket once every gradient of the bucket is ready.

A training step is::

    ddp = DDPBucketed(model, bucket_size_mb=25)      # or DDPIndividualParameters(model)
    ddp.on_train_batch_start()                       # bucketed: closes any unfinished round (optional)
    loss = loss_fn(ddp(x_local), y_local)            # each rank its own shard of the global batch
    loss.backward()                                  # communication starts during backward
    ddp.finish_gradient_synchronization()            # wait; every .grad is now the mean over the ranks
    optimizer.step()

**Construction.** Every parameter and buffer of the module is broadcast from the group's rank 0, so all ranks
start from the same weights (buffers are not synchronised again later: use deterministic buffers, as
``TransformerLM``'s RoPE tables are).

**Which parameters.** ``module.parameters()`` yields each ``Parameter`` object once, so a tied weight (one
``Parameter`` reachable from two modules, e.g. tied input/output embeddings) is registered and reduced once:
its hook fires once per backward, after autograd has summed the contributions of both uses. Parameters with
``requires_grad=False`` are broadcast but never communicated.

**Averaging.** Gradients are summed by the all-reduce and divided by the world size afterwards (gloo has no
``AVG``); with a per-rank mean loss over equal shards this is the gradient of the mean loss over the global
batch.

**Parameters without a gradient this step (unused).** A parameter whose hook does not fire in a backward pass
keeps its ``.grad`` as it was (``None`` after ``zero_grad(set_to_none=True)``), as in single-process training.

* Individual: there is one collective per parameter, issued in hook order, so a parameter must be used on all
  ranks or on none in a given step (otherwise the ranks issue different collectives and the step fails or
  hangs). Use the bucketed wrapper when usage may differ across ranks.
* Bucketed: buckets are launched strictly in bucket order, and ``finish_gradient_synchronization`` launches
  the buckets that never became complete (a bucket holding an unused parameter). Every rank therefore issues
  the same collectives in the same order whatever its parameters' usage. Each bucket carries one presence flag
  per parameter; a missing local gradient counts as zeros, a parameter that received a gradient on some rank
  gets the average over all ranks (zeros where missing), and one that received none on any rank keeps
  ``.grad`` untouched.

**Several backward passes before a step (gradient accumulation).**

* Inside ``with ddp.no_sync():`` the hooks do nothing: gradients accumulate locally. The first backward pass
  outside it reduces the accumulated ``.grad`` — the cheap way (one round of communication per optimizer
  step).
* Without ``no_sync``, every backward pass starts a round. The wrapper's ``forward`` first finishes a round
  still in flight (as ``finish_gradient_synchronization`` would), so a later backward never accumulates into a
  gradient that is being communicated. Each round leaves ``.grad`` = the mean over ranks of the gradient
  accumulated so far, so after ``k`` backward passes ``.grad`` is the mean over ranks of the sum of the ``k``
  local gradients — the same result as ``no_sync`` with ``k`` times the communication.
* Two backward passes in one round (e.g. ``retain_graph=True`` and a second ``backward`` without a forward or
  a ``finish_gradient_synchronization`` in between) raise ``RuntimeError`` from the hook: the first pass's
  communication may still be in flight on that gradient.

**Without a process group** (``torch.distributed`` not available or not initialised) both wrappers act as
world size 1: nothing is broadcast or communicated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

MIB = 1024 * 1024


def _distributed(group: Any) -> tuple[bool, int]:
    """``(active, world_size)`` of ``group`` (the default group when None)."""
    if not (dist.is_available() and dist.is_initialized()):
        return False, 1
    return True, dist.get_world_size(group)


def broadcast_module(module: nn.Module, group: Any = None) -> None:
    """Overwrite every parameter and buffer of ``module`` with the group's rank-0 values, in place."""
    active, world = _distributed(group)
    if not active or world == 1:
        return
    src = 0 if group is None else dist.get_global_rank(group, 0)
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=src, group=group)


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Each distinct ``Parameter`` that requires grad, in ``module.parameters()`` order (tied ones once)."""
    seen: set[int] = set()
    out = []
    for p in module.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


class _DDPBase(nn.Module):
    def __init__(self, module: nn.Module, process_group: Any = None) -> None:
        super().__init__()
        self.module = module
        self.process_group = process_group
        self._active, self.world_size = _distributed(process_group)
        broadcast_module(module, process_group)
        self._sync = True
        self._round_open = False  # a backward pass has started communication that is not finished yet
        params = trainable_parameters(module)
        self._build(params)
        self._hook_handles = [p.register_post_accumulate_grad_hook(self._on_grad_ready) for p in params]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._round_open:  # a previous backward's round: finish it before new gradients accumulate
            self.finish_gradient_synchronization()
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside accumulate gradients locally, with no communication."""
        if self._round_open:
            self.finish_gradient_synchronization()
        old, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = old

    def remove_hooks(self) -> None:
        """Detach the gradient hooks from the module's parameters (the wrapper stops communicating)."""
        for h in self._hook_handles:
            h.remove()
        self._hook_handles = []

    def _communicating(self) -> bool:
        return self._sync and self._active and self.world_size > 1

    def _build(self, params: list[nn.Parameter]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _on_grad_ready(self, param: nn.Parameter) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def finish_gradient_synchronization(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class DDPIndividualParameters(_DDPBase):
    """One asynchronous all-reduce per parameter, launched from its post-accumulate-grad hook (see the module
    docstring for the contract)."""

    def _build(self, params: list[nn.Parameter]) -> None:
        self._pending: list[tuple[Any, nn.Parameter, Tensor]] = []
        self._launched: set[int] = set()

    def _on_grad_ready(self, param: nn.Parameter) -> None:
        if not self._communicating() or param.grad is None:
            return
        if id(param) in self._launched:
            raise RuntimeError(
                "DDPIndividualParameters: a second backward pass reached a parameter whose gradient is "
                "still being all-reduced; call finish_gradient_synchronization() (or run a forward) between "
                "backward passes, or accumulate inside no_sync()"
            )
        self._launched.add(id(param))
        self._round_open = True
        grad = param.grad
        buf = grad if grad.is_contiguous() else grad.contiguous()  # collectives need contiguous tensors
        handle = dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=self.process_group, async_op=True)
        self._pending.append((handle, param, buf))

    @property
    def num_pending(self) -> int:
        """All-reduces launched and not yet waited for."""
        return len(self._pending)

    def finish_gradient_synchronization(self) -> None:
        """Wait for every launched all-reduce and divide the summed gradients by the world size."""
        pending, self._pending = self._pending, []
        for handle, param, buf in pending:
            handle.wait()
            if buf is not param.grad:
                param.grad.copy_(buf)
            param.grad.div_(self.world_size)
        self._launched.clear()
        self._round_open = False


@dataclass
class Bucket:
    """Parameters (same dtype and device) communicated together as one flat tensor."""

    params: list[nn.Parameter]
    nbytes: int
    ready: set[int] = field(default_factory=set)  # ids of the params whose gradient is ready this round
    work: Any = None  # the in-flight all-reduce
    flat: Tensor | None = None  # gradients, then one presence flag per param


def plan_buckets(params: list[nn.Parameter], bucket_bytes: float) -> list[list[nn.Parameter]]:
    """Split ``params`` into buckets, filled in the *reverse* of the given order (gradients of the last layers
    are ready first). A bucket holds at most ``bucket_bytes`` of parameters; a parameter larger than that
    gets a bucket of its own; a change of dtype or device starts a new bucket."""
    buckets: list[list[nn.Parameter]] = []
    current: list[nn.Parameter] = []
    size = 0
    for p in reversed(params):
        nbytes = p.numel() * p.element_size()
        compatible = not current or (current[0].dtype == p.dtype and current[0].device == p.device)
        if current and (size + nbytes > bucket_bytes or not compatible):
            buckets.append(current)
            current, size = [], 0
        current.append(p)
        size += nbytes
    if current:
        buckets.append(current)
    return buckets


class DDPBucketed(_DDPBase):
    """Buckets of at most ``bucket_size_mb`` MiB (``bucket_size_mb * 2**20`` bytes), each all-reduced as one
    flat tensor once all its gradients are ready; buckets are launched in bucket order (see the module
    docstring)."""

    def __init__(self, module: nn.Module, bucket_size_mb: float, process_group: Any = None) -> None:
        if not bucket_size_mb > 0:
            raise ValueError(f"bucket_size_mb must be > 0, got {bucket_size_mb}")
        self.bucket_size_mb = float(bucket_size_mb)
        super().__init__(module, process_group)

    def _build(self, params: list[nn.Parameter]) -> None:
        self.buckets = [
            Bucket(b, sum(p.numel() * p.element_size() for p in b))
            for b in plan_buckets(params, self.bucket_size_mb * MIB)
        ]
        self._bucket_of = {id(p): i for i, b in enumerate(self.buckets) for p in b.params}
        self._next = 0  # buckets[: self._next] are launched this round

    # ------------------------------------------------------------------------------------------- the round
    def _on_grad_ready(self, param: nn.Parameter) -> None:
        if not self._communicating() or param.grad is None:
            return
        i = self._bucket_of[id(param)]
        bucket = self.buckets[i]
        if id(param) in bucket.ready:
            raise RuntimeError(
                "DDPBucketed: a second backward pass reached a parameter already reduced in this round; call "
                "finish_gradient_synchronization() (or run a forward) between backward passes, or accumulate "
                "inside no_sync()"
            )
        if i < self._next:  # its bucket already went out without it: a gradient that arrived too late
            raise RuntimeError("DDPBucketed: a gradient became ready after its bucket was communicated")
        bucket.ready.add(id(param))
        self._round_open = True
        while self._next < len(self.buckets) and len(self.buckets[self._next].ready) == len(
            self.buckets[self._next].params
        ):
            self._launch(self._next)

    def _launch(self, i: int) -> None:
        """Flatten bucket ``i``'s gradients (zeros where missing) and presence flags; start the all-reduce."""
        bucket = self.buckets[i]
        first = bucket.params[0]
        parts = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in bucket.params]
        flags = torch.tensor(
            [p.grad is not None for p in bucket.params], dtype=first.dtype, device=first.device
        )
        bucket.flat = torch.cat([*parts, flags])
        bucket.work = dist.all_reduce(
            bucket.flat, op=dist.ReduceOp.SUM, group=self.process_group, async_op=True
        )
        self._next = i + 1

    @property
    def num_pending(self) -> int:
        """Bucket all-reduces launched and not yet waited for."""
        return sum(b.work is not None for b in self.buckets)

    def finish_gradient_synchronization(self) -> None:
        """Launch the buckets not launched yet (in order), wait for all, copy the averaged gradients back."""
        if self._round_open:
            while self._next < len(self.buckets):
                self._launch(self._next)
        for bucket in self.buckets:
            if bucket.work is None:
                continue
            bucket.work.wait()
            flat = bucket.flat
            numel = sum(p.numel() for p in bucket.params)
            flat[:numel].div_(self.world_size)
            present = flat[numel:]
            offset = 0
            for j, p in enumerate(bucket.params):
                n = p.numel()
                if present[j] > 0:
                    averaged = flat[offset : offset + n].view_as(p)
                    if p.grad is None:
                        p.grad = averaged.clone()
                    else:
                        p.grad.copy_(averaged)
                offset += n
        self._reset()

    def on_train_batch_start(self) -> None:
        """Start of a step: finish a round left open, then clear the per-round state."""
        if self._round_open:
            self.finish_gradient_synchronization()
        self._reset()

    def _reset(self) -> None:
        for bucket in self.buckets:
            bucket.ready.clear()
            bucket.work = None
            bucket.flat = None
        self._next = 0
        self._round_open = False
