"""The training loop: :func:`train` runs a :class:`~lmfs.train.config.TrainConfig` to completion.

One step = ``grad_accum_steps`` micro-batches of fwd+bwd, clip the global gradient norm, one AdamW step, with
the learning rate from the cosine schedule (linear warmup). Every ``eval_interval`` steps the mean loss over
``eval_batches`` fixed validation batches is logged; every ``ckpt_interval`` steps a checkpoint is written
atomically. Starting again on the same ``out_dir`` resumes from the newest complete checkpoint; on the CPU the
resumed run is bit-identical to an uninterrupted one (the batch sampler's generator and every global RNG are
restored). A NaN/inf loss or gradient norm stops the run with :class:`NonFiniteLossError` before the bad step
is applied, naming the newest checkpoint that verifies.

Reliability. A run holds an exclusive lock on its ``out_dir`` (:mod:`lmfs.train.runlock`) while it trains: a
second training into the same folder stops with :class:`~lmfs.train.runlock.RunLockedError`, and the lock of a
killed run is taken over. Resuming verifies each checkpoint's checksums (:func:`~lmfs.train.checkpoint.
verify_checkpoint`) and falls back to the newest one that verifies, saying which it skipped. Starting a run
that already reached ``max_steps`` (or its time limit) says "already complete at step N" and changes nothing.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmfs.train.checkpoint import (
    checkpoint_path,
    newest_valid_checkpoint,
    prune_checkpoints,
    remove_stale_temp_files,
    restore_rng_state,
    save_checkpoint,
)
from lmfs.train.config import MODEL_TABLE, ConfigError, TrainConfig, nested_config, save_config
from lmfs.train.data import get_batch, load_tokens, resolve_device
from lmfs.train.metrics import MetricsLog, read_metrics, truncate_metrics


class NonFiniteLossError(RuntimeError):
    """The loss or gradient norm became NaN/inf; the run stopped before applying that step."""


@dataclass
class TrainResult:
    """What a finished (or stopped) run reached. ``final_val_loss`` is None without validation data."""

    final_train_loss: float
    final_val_loss: float | None
    steps: int
    tokens_seen: int
    wall_seconds: float
    out_dir: Path
    n_params: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "out_dir": str(self.out_dir)}


# ----------------------------------------------------------------------------------------------- helpers


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        return resolve_device(name)
    except RuntimeError as exc:
        raise ConfigError(str(exc)) from None


def _note(message: str) -> None:
    print(f"lmfs train: {message}", file=sys.stderr, flush=True)


def _tokens(path: str, what: str, cfg: TrainConfig) -> np.ndarray:
    data = load_tokens(path, dtype=cfg.data_dtype)
    context = cfg.model.context_length
    if len(data) < context + 1:
        raise ConfigError(
            f"{what} {path} has {len(data)} tokens, fewer than context_length + 1 = {context + 1}; "
            "use a bigger token file or a smaller context_length"
        )
    return data


def _build(cfg: TrainConfig, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    from lmfs.nn import TransformerLM
    from lmfs.optim import AdamW

    dtype = torch.bfloat16 if cfg.dtype == "bfloat16" else torch.float32
    model = TransformerLM(cfg.model, device=device, dtype=dtype)
    optimizer = AdamW(
        model.parameters(),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
    )
    return model, optimizer


def _loss(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, autocast: contextlib.AbstractContextManager
) -> torch.Tensor:
    from lmfs.nn import cross_entropy

    with autocast:
        logits = model(x)  # (B, T, V)
    return cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    data: np.ndarray,
    cfg: TrainConfig,
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
) -> float:
    """Mean loss over ``cfg.eval_batches`` validation batches, the same batches every call (seed-derived)."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    was_training = model.training
    model.eval()
    total = 0.0
    for _ in range(cfg.eval_batches):
        x, y = get_batch(data, cfg.batch_size, cfg.model.context_length, device, generator=gen)
        total += _loss(model, x, y, autocast or contextlib.nullcontext()).item()
    model.train(was_training)
    return total / cfg.eval_batches


def _check_same_model(saved: dict[str, Any] | None, cfg: TrainConfig, ckpt: Path) -> None:
    """The checkpoint's model (its config nested or flat; fields it predates are not compared) is ``cfg``'s."""
    if not saved:
        return
    model = cfg.model.to_dict()
    stored = nested_config(saved)[MODEL_TABLE]
    diff = [
        f"{k}: checkpoint {v!r} vs config {model[k]!r}"
        for k, v in stored.items()
        if k in model and v != model[k]
    ]
    if diff:
        raise ConfigError(
            f"cannot resume from {ckpt}: the model differs ({'; '.join(diff)}); use a new out_dir or set resume=false"
        )


# ----------------------------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, *, progress: bool = True, stop_at: int | None = None) -> TrainResult:
    """Train the model ``cfg`` describes, resuming from ``cfg.out_dir`` when it holds a checkpoint; the run
    folder is locked meanwhile (RunLockedError when another training holds it). See :func:`_train`."""
    from lmfs.train.runlock import run_lock

    cfg.validate()
    if cfg.parallel != "none":  # several processes (torchrun): DDP, ZeRO-1 or FSDP
        from lmfs.train.distributed import train_distributed

        return train_distributed(cfg, progress=progress, stop_at=stop_at)
    with run_lock(cfg.out_dir, say=_note):
        return _train(cfg, progress=progress, stop_at=stop_at)


def _train(cfg: TrainConfig, *, progress: bool = True, stop_at: int | None = None) -> TrainResult:
    """Train the model ``cfg`` describes, resuming from ``cfg.out_dir`` when it holds a checkpoint.

    Args:
        cfg: the run (validated here).
        progress: show a tqdm bar (False for sweeps and tests).
        stop_at: stop after this step with a checkpoint, as if interrupted (a later call resumes).

    Returns:
        TrainResult. Writes ``out_dir/{config.json, metrics.jsonl, summary.json, checkpoints/, tb/}``.

    Raises:
        ConfigError for bad values or files, NonFiniteLossError when the loss or gradient norm is NaN/inf.
    """
    from tqdm.auto import tqdm

    from lmfs.optim import clip_grad_norm_, cosine_lr

    cfg.validate()
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(ckpt_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _pick_device(cfg.device)
    train_data = _tokens(cfg.train_data, "train_data", cfg)
    val_data = _tokens(cfg.val_data, "val_data", cfg) if cfg.val_data else None

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model, optimizer = _build(cfg, device)
    n_params = sum(p.numel() for p in model.parameters())
    sampler = torch.Generator().manual_seed(cfg.seed)  # batch starts; saved and restored with checkpoints

    step, prior_wall, last_train, last_val = 0, 0.0, math.nan, None
    found = newest_valid_checkpoint(ckpt_dir, map_location=device, quarantine=True) if cfg.resume else None
    if found is not None:
        ckpt, state = found
        _check_same_model(state.get("config"), cfg, ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_rng_state(state["rng"], sampler)
        step = int(state["iteration"])
        extra = state.get("extra", {})
        prior_wall, last_train, last_val = (
            extra.get("wall_seconds", 0.0),
            extra.get("train_loss", math.nan),
            extra.get("val_loss"),
        )
        timed_out = bool(cfg.max_wall_seconds) and prior_wall >= cfg.max_wall_seconds
        if step >= cfg.max_steps or timed_out:  # nothing to do: leave the finished run as it is
            why = f"max_steps {cfg.max_steps}" if step >= cfg.max_steps else f"max_wall_seconds {cfg.max_wall_seconds:g}"
            _note(f"run {out_dir} is already complete at step {step} ({why}); nothing changed")
            return TrainResult(
                final_train_loss=last_train,
                final_val_loss=last_val,
                steps=step,
                tokens_seen=int(extra.get("tokens_seen", step * cfg.tokens_per_step)),
                wall_seconds=prior_wall,
                out_dir=out_dir,
                n_params=n_params,
            )
        _note(f"resumed from step {step} ({ckpt})")
    # drop what was logged after that checkpoint (everything, when starting from scratch: a run killed before its
    # first checkpoint would otherwise keep its step-0 record and log it twice)
    truncate_metrics(out_dir / "metrics.jsonl", step if found is not None else -1)
    save_config(cfg, out_dir / "config.json")

    net = torch.compile(model) if cfg.compile else model
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if cfg.autocast_bf16
        else contextlib.nullcontext()
    )
    params = [p for p in model.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    last_step = min(cfg.max_steps, stop_at) if stop_at is not None else cfg.max_steps

    def wall() -> float:
        return prior_wall + time.perf_counter() - t0

    def checkpoint(at: int) -> None:
        extra = {
            "wall_seconds": wall(),
            "tokens_seen": at * cfg.tokens_per_step,
            "train_loss": last_train,
            "val_loss": last_val,
        }
        save_checkpoint(
            model,
            optimizer,
            at,
            checkpoint_path(ckpt_dir, at),
            config=cfg.to_dict(),
            generator=sampler,
            extra=extra,
        )
        prune_checkpoints(ckpt_dir, cfg.keep_checkpoints)

    def validate(at: int) -> float | None:
        if val_data is None:
            return None
        loss = evaluate(net, val_data, cfg, device, autocast)
        log.write(
            {
                "kind": "val",
                "step": at,
                "tokens": at * cfg.tokens_per_step,
                "val_loss": loss,
                "val_ppl": math.exp(min(loss, 50.0)),
                "wall_s": round(wall(), 3),
            }
        )
        return loss

    with MetricsLog(out_dir, tensorboard=cfg.tensorboard) as log:
        if step == 0 and cfg.eval_interval:
            last_val = validate(0)
        bar = tqdm(
            total=cfg.max_steps,
            initial=step,
            disable=not progress,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        t_log, tokens_at_log = time.perf_counter(), step * cfg.tokens_per_step
        val_at, ckpt_at = (0 if last_val is not None else -1), step
        while step < last_step:
            if cfg.max_wall_seconds and wall() >= cfg.max_wall_seconds:
                if progress:
                    bar.write(f"time limit: stopping at step {step} after {wall():.0f} s (max_wall_seconds)")
                break
            lr = cosine_lr(step, cfg.lr, cfg.min_lr, cfg.warmup_iters, cfg.schedule_cycle)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=device)
            for _ in range(cfg.grad_accum_steps):
                x, y = get_batch(
                    train_data, cfg.batch_size, cfg.model.context_length, device, generator=sampler
                )
                loss = _loss(net, x, y, autocast)
                (loss / cfg.grad_accum_steps).backward()
                loss_sum += loss.detach()
            train_loss = (loss_sum / cfg.grad_accum_steps).item()
            grad_norm = float(clip_grad_norm_(params, cfg.grad_clip)) if cfg.grad_clip > 0 else math.nan
            if not math.isfinite(train_loss) or (cfg.grad_clip > 0 and not math.isfinite(grad_norm)):
                good = newest_valid_checkpoint(ckpt_dir, say=lambda _: None)
                log.write(
                    {"kind": "error", "step": step + 1, "train_loss": train_loss, "grad_norm": grad_norm}
                )
                bar.close()
                raise NonFiniteLossError(
                    f"training stopped at step {step + 1}: loss {train_loss}, gradient norm {grad_norm} (lr {lr:.3g}). "
                    "The step was not applied; the newest checkpoint that verifies is "
                    f"{good[0] if good else 'none (no checkpoint yet, or none verifies)'}. "
                    "Lower lr, raise warmup_iters, keep grad_clip on, or check the data for bad token ids."
                )
            optimizer.step()
            step += 1
            last_train = train_loss
            bar.update(1)
            if step % cfg.log_interval == 0 or step == last_step:
                now = time.perf_counter()
                tokens = step * cfg.tokens_per_step
                log.write(
                    {
                        "kind": "train",
                        "step": step,
                        "tokens": tokens,
                        "train_loss": train_loss,
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "tokens_per_s": round((tokens - tokens_at_log) / max(now - t_log, 1e-9), 1),
                        "wall_s": round(wall(), 3),
                    }
                )
                t_log, tokens_at_log = now, tokens
                bar.set_postfix(loss=f"{train_loss:.3f}", lr=f"{lr:.2e}")
            if (cfg.eval_interval and step % cfg.eval_interval == 0) or step == cfg.max_steps:
                last_val, val_at = validate(step), step
            if (cfg.ckpt_interval and step % cfg.ckpt_interval == 0) or step == last_step:
                checkpoint(step)
                ckpt_at = step
        bar.close()
        if val_data is not None and (val_at != step or last_val is None) and step != stop_at:
            last_val = validate(step)  # stopped by the time limit, or resumed after the end
        if ckpt_at != step:
            checkpoint(step)

    result = TrainResult(
        final_train_loss=last_train,
        final_val_loss=last_val,
        steps=step,
        tokens_seen=step * cfg.tokens_per_step,
        wall_seconds=wall(),
        out_dir=out_dir,
        n_params=n_params,
    )
    _write_summary(out_dir, result)
    return result


def _write_summary(out_dir: Path, result: TrainResult) -> None:
    from lmfs.atomic import write_json_atomic

    write_json_atomic(out_dir / "summary.json", result.to_dict(), indent=2)


__all__ = ["NonFiniteLossError", "TrainResult", "evaluate", "read_metrics", "train"]
