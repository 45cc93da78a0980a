"""``lmfs train`` on several processes: DDP, ZeRO-1 or FSDP from :mod:`lmfs.parallel`, launched by ``torchrun``.

    torchrun --nproc-per-node 2 -m lmfs train --config lmfs/train/configs/gutenberg_small.toml --set parallel=fsdp

What a step is does not change with the world size: ``batch_size`` stays the *global* batch. Every rank draws
the same batch starts from the shared sampler (the same generator, seed and state as a one-process run) and
reads only its ``batch_size / world`` rows of them, so the ranks together see exactly the one-process batch,
and the mean of the ranks' losses (and gradients) is the one-process mean. The global gradient norm is computed
over the shards (FSDP) or the replicated gradients (DDP, ZeRO-1) and clipped as one process would. So the loss
curve follows the one-process run up to the order of floating-point sums.

Rank 0 alone holds the run-folder lock, writes metrics, summary and checkpoints. Checkpoints are in the
one-process layout: FSDP's parameters and AdamW moments are all-gathered into full tensors (any world size, or
``lmfs train`` / ``lmfs evaluate`` in one process, can read them); ZeRO-1 keeps each rank's optimizer shard
(``optimizer = {"zero1_ranks": [...]}``, resumable at the same world size). Resuming restores the sampler
state, so a run killed and restarted on the same world size logs the same losses as an uninterrupted one.

A rank that dies ends the job instead of hanging it: torchrun stops the other workers, and every collective
of the process group has a timeout (``LMFS_DIST_TIMEOUT`` seconds, default 300) after which the survivors stop
with :class:`DistributedError` naming the step.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from lmfs.train.config import ConfigError, TrainConfig

PARALLEL_MODES = ("none", "ddp", "fsdp", "zero1")
TIMEOUT_ENV = "LMFS_DIST_TIMEOUT"


class DistributedError(RuntimeError):
    """A collective failed or timed out: another rank died or hung."""


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher setting WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _say(message: str) -> None:
    print(f"lmfs train: {message}", file=sys.stderr, flush=True)


class _StateOf:
    """Something with ``state_dict()`` (what save_checkpoint calls) returning a prepared dict."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def state_dict(self) -> dict[str, Any]:
        return self._state


# ----------------------------------------------------------------------------------------------- setup


def init(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes (gloo on the CPU, NCCL on CUDA); (rank, world, device)."""
    from lmfs.train.loop import _pick_device

    device = _pick_device(cfg.device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise ConfigError(f"WORLD_SIZE={world} but {key} is not set: launch with torchrun --nproc-per-node N")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "300")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return dist.get_rank(), dist.get_world_size(), device


def _wrap(cfg: TrainConfig, model: torch.nn.Module) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    from lmfs.optim import AdamW
    from lmfs.parallel import DDPIndividualParameters, ShardedOptimizer
    from lmfs.parallel.fsdp import FSDP

    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.parallel == "fsdp":
        net = FSDP(model)
        return net, AdamW(net.parameters(), **kwargs)
    net = DDPIndividualParameters(model)
    if cfg.parallel == "zero1":
        return net, ShardedOptimizer(net.parameters(), AdamW, **kwargs)
    return net, AdamW(net.parameters(), **kwargs)


def _local_rows(data: np.ndarray, cfg: TrainConfig, rank: int, world: int, sampler: torch.Generator,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's rows of the global batch :func:`lmfs.train.data.get_batch` would draw from ``sampler``."""
    T, B = cfg.model.context_length, cfg.batch_size
    starts = torch.randint(0, len(data) - T, (B,), generator=sampler).numpy()
    per = B // world
    mine = starts[rank * per : (rank + 1) * per]
    window = torch.from_numpy(np.asarray(data[mine[:, None] + np.arange(T + 1)[None, :]]).astype(np.int64))
    return window[:, :-1].contiguous().to(device), window[:, 1:].contiguous().to(device)


def _mean(value: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return value


def _clip(net: torch.nn.Module, cfg: TrainConfig, world: int) -> float:
    """Clip to the global L2 norm as :func:`lmfs.optim.clip_grad_norm_` does in one process; the norm."""
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    sq = torch.stack([g.float().pow(2).sum() for g in grads]).sum()
    if cfg.parallel == "fsdp" and world > 1:  # each rank holds its own piece of every gradient
        dist.all_reduce(sq)
    total = sq.sqrt()
    if cfg.grad_clip > 0:
        coef = (cfg.grad_clip / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.to(g.dtype))
    return float(total)


# ----------------------------------------------------------------------------------------------- checkpoints


def _model_state(cfg: TrainConfig, net: torch.nn.Module) -> dict[str, Any]:
    if cfg.parallel == "fsdp":
        return net.full_state_dict()  # collective
    return net.module.state_dict()


def _optim_state(cfg: TrainConfig, net: torch.nn.Module, opt: torch.optim.Optimizer, world: int) -> dict:
    if cfg.parallel == "fsdp":
        from lmfs.parallel.fsdp import gather_optimizer_state

        return gather_optimizer_state(net, opt)  # collective
    if cfg.parallel == "zero1":
        shards: list[Any] = [None] * world
        if world > 1:
            dist.all_gather_object(shards, opt.state_dict())
        else:
            shards = [opt.state_dict()]
        return {"zero1_ranks": shards}
    return opt.state_dict()


def _load(cfg: TrainConfig, net, opt, state: dict[str, Any], rank: int, world: int) -> None:
    if cfg.parallel == "fsdp":
        from lmfs.parallel.fsdp import shard_optimizer_state

        net.load_full_state_dict(state["model"])
        opt.load_state_dict(shard_optimizer_state(net, opt, state["optimizer"]))
        return
    net.module.load_state_dict(state["model"])
    optim = state["optimizer"]
    if cfg.parallel == "zero1":
        shards = optim.get("zero1_ranks") if isinstance(optim, dict) else None
        if shards is None or len(shards) != world:
            have = "a one-process optimizer state" if shards is None else f"{len(shards)} ranks' shards"
            raise ConfigError(f"cannot resume ZeRO-1 on {world} ranks from {have}: resume with the same world size")
        opt.load_state_dict(shards[rank])
    else:
        opt.load_state_dict(optim)


def _find_resume(ckpt_dir: Path, device: torch.device, rank: int, world: int) -> dict[str, Any] | None:
    """The newest checkpoint rank 0 can read, read by every rank (they agree on the file through rank 0)."""
    from lmfs.train import checkpoint as ck

    path: list[Any] = [None]
    if rank == 0:
        newest_valid = getattr(ck, "newest_valid_checkpoint", None)
        if newest_valid is not None:
            found = newest_valid(ckpt_dir, map_location="cpu")
            path[0] = None if found is None else str(found[0] if isinstance(found, tuple) else found)
        else:
            latest = ck.latest_checkpoint(ckpt_dir)
            path[0] = None if latest is None else str(latest)
    if world > 1:
        dist.broadcast_object_list(path, src=0)
    if path[0] is None:
        return None
    return {"path": Path(path[0]), **ck.read_checkpoint(path[0], map_location=device)}


# ----------------------------------------------------------------------------------------------- the loop


def train_distributed(cfg: TrainConfig, *, progress: bool = True, stop_at: int | None = None):
    """:func:`lmfs.train.loop.train` with ``cfg.parallel`` in ddp / fsdp / zero1, on the torchrun world (one
    process without torchrun). Returns the TrainResult on every rank (rank 0 writes the files)."""
    cfg.validate()
    if cfg.parallel not in PARALLEL_MODES[1:]:
        raise ConfigError(f"parallel must be one of {PARALLEL_MODES}, got {cfg.parallel!r}")
    rank, world, device = init(cfg)
    try:
        if cfg.batch_size % world:
            raise ConfigError(f"batch_size ({cfg.batch_size}) must be divisible by the {world} ranks")
        lock: contextlib.AbstractContextManager = contextlib.nullcontext()
        if rank == 0:
            try:
                from lmfs.train.runlock import run_lock

                lock = run_lock(cfg.out_dir, say=_say)
            except ImportError:
                pass
        with lock:
            return _train(cfg, rank, world, device, progress=progress and rank == 0, stop_at=stop_at)
    except (RuntimeError, dist.DistBackendError) as exc:
        if world > 1 and _looks_like_lost_peer(exc):
            raise DistributedError(
                f"rank {rank}/{world}: a collective failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                "another rank died or hung. The newest complete checkpoint is kept: run the same command to resume."
            ) from exc
        raise
    finally:
        if world > 1 and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def _looks_like_lost_peer(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "closed",
                                   "distbackend", "broken pipe"))


def _train(cfg: TrainConfig, rank: int, world: int, device: torch.device, *, progress: bool,
           stop_at: int | None):
    from tqdm.auto import tqdm

    from lmfs.optim import cosine_lr
    from lmfs.train.checkpoint import (
        checkpoint_path,
        prune_checkpoints,
        remove_stale_temp_files,
        restore_rng_state,
        save_checkpoint,
    )
    from lmfs.train.config import save_config
    from lmfs.train.loop import (
        NonFiniteLossError,
        TrainResult,
        _build,
        _check_same_model,
        _loss,
        _tokens,
        _write_summary,
    )
    from lmfs.train.metrics import MetricsLog, truncate_metrics

    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(ckpt_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_data = _tokens(cfg.train_data, "train_data", cfg)
    val_data = _tokens(cfg.val_data, "val_data", cfg) if cfg.val_data else None

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model, _ = _build(cfg, device)
    n_params = sum(p.numel() for p in model.parameters())
    net, optimizer = _wrap(cfg, model)
    sampler = torch.Generator().manual_seed(cfg.seed)

    step, prior_wall, last_train, last_val = 0, 0.0, math.nan, None
    state = _find_resume(ckpt_dir, device, rank, world) if cfg.resume else None
    if state is not None:
        _check_same_model(state.get("config"), cfg, state["path"])
        _load(cfg, net, optimizer, state, rank, world)
        restore_rng_state(state["rng"], sampler)
        step = int(state["iteration"])
        extra = state.get("extra", {})
        prior_wall = extra.get("wall_seconds", 0.0)
        last_train, last_val = extra.get("train_loss", math.nan), extra.get("val_loss")
        if rank == 0:
            _say(f"resuming from {state['path']} (step {step}, {world} ranks, parallel={cfg.parallel})")
    if rank == 0:
        truncate_metrics(out_dir / "metrics.jsonl", step)
        save_config(cfg, out_dir / "config.json")
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if cfg.autocast_bf16
        else contextlib.nullcontext()
    )
    t0 = time.perf_counter()
    last_step = min(cfg.max_steps, stop_at) if stop_at is not None else cfg.max_steps

    def wall() -> float:
        return prior_wall + time.perf_counter() - t0

    def checkpoint(at: int) -> None:
        model_state = _model_state(cfg, net)  # collectives: every rank
        optim_state = _optim_state(cfg, net, optimizer, world)
        if rank == 0:
            extra = {"wall_seconds": wall(), "tokens_seen": at * cfg.tokens_per_step, "train_loss": last_train,
                     "val_loss": last_val, "world_size": world, "parallel": cfg.parallel}
            save_checkpoint(_StateOf(model_state), _StateOf(optim_state), at, checkpoint_path(ckpt_dir, at),
                            config=cfg.to_dict(), generator=sampler, extra=extra)
            prune_checkpoints(ckpt_dir, cfg.keep_checkpoints)
        if world > 1:
            dist.barrier()  # nobody runs ahead of a checkpoint that may be the one to resume from

    @torch.no_grad()
    def evaluate() -> float:
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        net.eval()
        total = torch.zeros((), device=device)
        for _ in range(cfg.eval_batches):
            x, y = _local_rows(val_data, cfg, rank, world, gen, device)
            total += _loss(net, x, y, autocast)
        net.train()
        return float(_mean(total, world)) / cfg.eval_batches

    log = MetricsLog(out_dir, tensorboard=cfg.tensorboard) if rank == 0 else None

    def write(record: dict[str, Any]) -> None:
        if log is not None:
            log.write(record)

    def validate(at: int) -> float | None:
        if val_data is None:
            return None
        loss = evaluate()
        write({"kind": "val", "step": at, "tokens": at * cfg.tokens_per_step, "val_loss": loss,
               "val_ppl": math.exp(min(loss, 50.0)), "wall_s": round(wall(), 3)})
        return loss

    try:
        if step == 0 and cfg.eval_interval:
            last_val = validate(0)
        bar = tqdm(total=cfg.max_steps, initial=step, disable=not progress, desc=f"train ({world} ranks)",
                   unit="step", dynamic_ncols=True)
        t_log, tokens_at_log = time.perf_counter(), step * cfg.tokens_per_step
        val_at, ckpt_at = (0 if last_val is not None else -1), step
        while step < last_step:
            stop = torch.tensor([1.0 if cfg.max_wall_seconds and wall() >= cfg.max_wall_seconds else 0.0])
            if float(_mean(stop, world)) > 0:  # every rank stops at the same step
                break
            lr = cosine_lr(step, cfg.lr, cfg.min_lr, cfg.warmup_iters, cfg.schedule_cycle)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=device)
            for micro in range(cfg.grad_accum_steps):
                x, y = _local_rows(train_data, cfg, rank, world, sampler, device)
                sync = cfg.parallel == "fsdp" or micro == cfg.grad_accum_steps - 1
                ctx = contextlib.nullcontext() if sync else net.no_sync()
                with ctx:
                    loss = _loss(net, x, y, autocast)
                    (loss / cfg.grad_accum_steps).backward()
                loss_sum += loss.detach()
            net.finish_gradient_synchronization()
            train_loss = float(_mean(loss_sum, world)) / cfg.grad_accum_steps
            grad_norm = _clip(net, cfg, world) if cfg.grad_clip > 0 else math.nan
            if not math.isfinite(train_loss) or (cfg.grad_clip > 0 and not math.isfinite(grad_norm)):
                write({"kind": "error", "step": step + 1, "train_loss": train_loss, "grad_norm": grad_norm})
                raise NonFiniteLossError(
                    f"training stopped at step {step + 1}: loss {train_loss}, gradient norm {grad_norm} "
                    f"(lr {lr:.3g}); the step was not applied. Lower lr, raise warmup_iters or keep grad_clip on."
                )
            optimizer.step()
            step += 1
            last_train = train_loss
            bar.update(1)
            if step % cfg.log_interval == 0 or step == last_step:
                now = time.perf_counter()
                tokens = step * cfg.tokens_per_step
                write({"kind": "train", "step": step, "tokens": tokens, "train_loss": train_loss, "lr": lr,
                       "grad_norm": grad_norm, "world_size": world,
                       "tokens_per_s": round((tokens - tokens_at_log) / max(now - t_log, 1e-9), 1),
                       "wall_s": round(wall(), 3)})
                t_log, tokens_at_log = now, tokens
                bar.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}")
            if (cfg.eval_interval and step % cfg.eval_interval == 0) or step == cfg.max_steps:
                last_val, val_at = validate(step), step
            if (cfg.ckpt_interval and step % cfg.ckpt_interval == 0) or step == last_step:
                checkpoint(step)
                ckpt_at = step
        bar.close()
        if val_data is not None and (val_at != step or last_val is None) and step != stop_at:
            last_val = validate(step)
        if ckpt_at != step:
            checkpoint(step)
    finally:
        if log is not None:
            log.close()
    result = TrainResult(final_train_loss=last_train, final_val_loss=last_val, steps=step,
                         tokens_seen=step * cfg.tokens_per_step, wall_seconds=wall(), out_dir=out_dir,
                         n_params=n_params)
    if rank == 0:
        _write_summary(out_dir, result)
    return result


__all__ = ["PARALLEL_MODES", "DistributedError", "launched", "train_distributed"]
