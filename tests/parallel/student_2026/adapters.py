"""A student-style adapter written against the spring-2026 course's parallelism names only (get_ddp,
ddp_on_after_backward, get_fsdp, fsdp_on_after_backward, fsdp_gather_full_params). It imports torch and nothing
of lmfs, and implements its own small DDP and FSDP in a different way from lmfs: each module owning parameters
runs as one autograd function that gathers its weights, runs the module without keeping them, and in backward
gathers them again, re-runs the module and reduce-scatters the weight gradients."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import nn


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ------------------------------------------------------------------------------------------------ DDP


class SimpleDDP(nn.Module):
    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        _, self.world = _rank_world()
        self.handles: list = []
        if self.world > 1:
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)
        seen = set()
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                p.register_post_accumulate_grad_hook(self._ready)

    def _ready(self, p: torch.Tensor) -> None:
        if self.world > 1:
            self.handles.append((p, dist.all_reduce(p.grad, async_op=True)))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def finish(self) -> None:
        for p, h in self.handles:
            h.wait()
            p.grad.div_(self.world)
        self.handles.clear()


def get_ddp(module: nn.Module) -> nn.Module:
    return SimpleDDP(module)


def ddp_on_after_backward(ddp_model: nn.Module, optimizer) -> None:
    ddp_model.finish()


# ------------------------------------------------------------------------------------------------ FSDP


class _Unit(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fsdp, module, run, x, *pieces):
        ctx.fsdp, ctx.module, ctx.run = fsdp, module, run
        ctx.save_for_backward(x)
        fsdp.shadow(module, fsdp.gather_all(module))
        try:
            return run(fsdp.cast(x))
        finally:
            fsdp.unshadow(module)

    @staticmethod
    def backward(ctx, grad_out):
        fsdp, module = ctx.fsdp, ctx.module
        (x,) = ctx.saved_tensors
        fulls = {name: t.requires_grad_() for name, t in fsdp.gather_all(module).items()}
        fsdp.shadow(module, fulls)
        try:
            with torch.enable_grad():
                xin = x.detach().requires_grad_(x.requires_grad)
                out = ctx.run(fsdp.cast(xin))
                inputs = list(fulls.values()) + ([xin] if xin.requires_grad else [])
                grads = torch.autograd.grad(out, inputs, grad_out, allow_unused=True)
        finally:
            fsdp.unshadow(module)
        for name, g in zip(fulls, grads[: len(fulls)], strict=True):
            if g is not None:
                fsdp.reduce_scatter(module._parameters[name], g)
        gx = grads[len(fulls)] if xin.requires_grad else None
        return (None, None, None, gx, *[None] * len(module._fsdp_names))


class SimpleFSDP(nn.Module):
    def __init__(self, module: nn.Module, compute_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.module, self.dtype = module, compute_dtype
        self.rank, self.world = _rank_world()
        self.meta: dict[int, tuple[torch.Size, int, int]] = {}  # id(piece) -> (shape, numel, per rank)
        self.pending: list = []
        pieces: dict[int, nn.Parameter] = {}
        for m in list(module.modules()):
            names = []
            for name, p in list(m._parameters.items()):
                if p is None or not p.requires_grad:
                    continue
                if id(p) not in pieces and id(p) not in self.meta:
                    pieces[id(p)] = self._cut(p)
                m._parameters[name] = pieces.get(id(p), p)
                names.append(name)
            if names:
                m._fsdp_names = names
                self._wrap(m)

    def _cut(self, p: torch.Tensor) -> nn.Parameter:
        n = max(1, math.ceil(p.numel() / self.world))
        flat = torch.zeros(n * self.world)
        flat[: p.numel()] = p.detach().reshape(-1).float()
        piece = nn.Parameter(flat[self.rank * n : (self.rank + 1) * n].clone())
        self.meta[id(piece)] = (p.shape, p.numel(), n)
        return piece

    def _wrap(self, m: nn.Module) -> None:
        run = m.forward
        fsdp = self

        def forward(x):
            pieces = [m._parameters[name] for name in m._fsdp_names]
            return _Unit.apply(fsdp, m, run, x, *pieces)

        m.forward = forward

    def cast(self, x):
        if self.dtype is not None and torch.is_tensor(x) and x.is_floating_point():
            return x.to(self.dtype)
        return x

    def gather(self, piece: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
        shape, numel, _ = self.meta[id(piece)]
        local = piece.detach().to(dtype or piece.dtype)
        if self.world == 1:
            return local[:numel].clone().view(shape)
        parts = [torch.empty_like(local) for _ in range(self.world)]
        dist.all_gather(parts, local)
        return torch.cat(parts)[:numel].view(shape)

    def gather_all(self, m: nn.Module) -> dict[str, torch.Tensor]:
        return {name: self.gather(m._parameters[name], self.dtype) for name in m._fsdp_names}

    def shadow(self, m: nn.Module, fulls: dict[str, torch.Tensor]) -> None:
        for name, t in fulls.items():
            m.__dict__[name] = t

    def unshadow(self, m: nn.Module) -> None:
        for name in m._fsdp_names:
            m.__dict__.pop(name, None)

    def reduce_scatter(self, piece: torch.Tensor, grad: torch.Tensor) -> None:
        _, numel, n = self.meta[id(piece)]
        flat = torch.zeros(n * self.world, dtype=grad.dtype)
        flat[:numel] = grad.reshape(-1)
        out = torch.empty(n, dtype=grad.dtype)
        if self.world == 1:
            out.copy_(flat)
            self.pending.append((piece, None, out))
        else:
            parts = list(flat.chunk(self.world))
            self.pending.append((piece, dist.reduce_scatter(out, parts, async_op=True), out))

    def forward(self, *args, **kwargs):
        return self.module(*(self.cast(a) for a in args), **kwargs)

    @torch.no_grad()
    def finish(self) -> None:
        for piece, handle, out in self.pending:
            if handle is not None:
                handle.wait()
            g = out.float() / self.world
            piece.grad = g if piece.grad is None else piece.grad + g
        self.pending.clear()

    @torch.no_grad()
    def full_params(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, p in self.module.named_parameters():
            out[name] = self.gather(p, torch.float32) if id(p) in self.meta else p.detach()
        return out


def get_fsdp(module: nn.Module, compute_dtype: torch.dtype | None = None) -> nn.Module:
    return SimpleFSDP(module, compute_dtype)


def fsdp_on_after_backward(fsdp_model: nn.Module, optimizer) -> None:
    fsdp_model.finish()


def fsdp_gather_full_params(fsdp_model: nn.Module) -> dict[str, torch.Tensor]:
    return fsdp_model.full_params()
