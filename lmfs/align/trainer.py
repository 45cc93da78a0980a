"""The alignment trainers: SFT, expert iteration, DPO and GRPO, built on the unit's tensor functions
(:mod:`lmfs.align.sft`, :mod:`lmfs.align.grpo`, :mod:`lmfs.align.dpo`).

Every trainer

* reads one config (:mod:`lmfs.align.config`), starts from a model (``run.init``: scratch, SmolLM2, a GGUF file
  or another alignment run) and writes ``out_dir/metrics.jsonl`` (+ TensorBoard under ``out_dir/tb``),
  ``out_dir/summary.json`` and atomic checkpoints under ``out_dir/checkpoints/``;
* resumes from the newest checkpoint in ``out_dir``: model, optimizer, RNG states (python / numpy / torch and
  the sampling generator), the problem stream's state, and for GRPO the rollout batch being trained on and the
  position inside it — on a CPU the resumed run is bit-identical to an uninterrupted one;
* measures accuracy on the task's held-out problems (greedy decoding, Wilson 95% interval) at the start, every
  ``run.eval_every`` updates and at the end.

Bad input never becomes a silent number: malformed JSONL rows, examples longer than the context and empty
responses in SFT data are skipped and counted (``skipped`` in the summary, an error if nothing is left);
a reward function that raises is counted (``reward_errors``) and its group is left out of the update.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from lmfs.align import checkpoint as ackpt
from lmfs.align.grpo import compute_group_normalized_rewards, grpo_microbatch_train_step, masked_mean
from lmfs.align.rewards import SafeReward, get_reward
from lmfs.align.rollout import SamplingParams, generate
from lmfs.align.sft import get_response_log_probs, sft_microbatch_train_step
from lmfs.align.stats import wilson_interval
from lmfs.align.tasks import CharTokenizer, make_task
from lmfs.nn.functional import log_softmax
from lmfs.optim import AdamW
from lmfs.optim.clip import clip_grad_norm_
from lmfs.optim.schedule import cosine_lr


class _LogitsView:
    """``model(ids).logits`` (what the tensor functions expect) for an lmfs TransformerLM."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def __call__(self, ids: Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.model(ids))

    def parameters(self):
        return self.model.parameters()


# ------------------------------------------------------------------------------------------- model and data


def build_lm(cfg: dict[str, Any], task: Any) -> Any:
    """The starting model of a run (``run.init``)."""
    from lmfs.align.models import LoadedModel, load
    from lmfs.nn import TransformerConfig, TransformerLM

    init = cfg["run"]["init"]
    if init == "scratch":
        tok = CharTokenizer()
        m = cfg["model"]
        config = TransformerConfig(vocab_size=tok.vocab_size, context_length=m["context_length"],
                                   d_model=m["d_model"], num_layers=m["num_layers"], num_heads=m["num_heads"],
                                   d_ff=m["d_ff"], rope_theta=m["rope_theta"])
        torch.manual_seed(cfg["run"]["seed"])
        model = TransformerLM(config)
        return LoadedModel(model, tok, f"scratch-{m['d_model']}x{m['num_layers']}", [tok.eos_token_id], None,
                           tok.spec())
    path = Path(init)
    if path.exists() and path.suffix != ".gguf":
        return ackpt.load_lm(path)
    return load(init)


def read_sft_jsonl(path: str | Path) -> tuple[list[tuple[str, str]], dict[str, int], list[str]]:
    """``{"prompt", "response"}`` rows; malformed ones are skipped and counted (with the first messages)."""
    rows, skipped, notes = [], {"malformed": 0}, []
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"SFT data not found: {p}")
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                prompt, response = rec["prompt"], rec["response"]
                if not isinstance(prompt, str) or not isinstance(response, str):
                    raise TypeError("prompt and response must be strings")
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                skipped["malformed"] += 1
                if len(notes) < 5:
                    notes.append(f"{p}:{lineno}: {type(exc).__name__}: {exc}")
                continue
            rows.append((prompt, response))
    return rows, skipped, notes


def encode_examples(tok: Any, pairs: list[tuple[str, str]], context: int, skipped: dict[str, int]
                    ) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids + EOS) per pair; over-long, empty or unencodable ones are counted in ``skipped``."""
    out = []
    for prompt, response in pairs:
        if not response.strip():
            skipped["empty_response"] = skipped.get("empty_response", 0) + 1
            continue
        try:
            p, r = list(tok.encode(prompt)), [*tok.encode(response), tok.eos_token_id]
        except ValueError:
            skipped["unencodable"] = skipped.get("unencodable", 0) + 1
            continue
        if not p:
            skipped["empty_prompt"] = skipped.get("empty_prompt", 0) + 1
            continue
        if len(p) + len(r) > context:
            skipped["too_long"] = skipped.get("too_long", 0) + 1
            continue
        out.append((p, r))
    return out


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Tensor]:
    """Right-padded ``input_ids``/``labels`` (shifted by one) and the response mask (as
    :func:`lmfs.align.sft.tokenize_prompt_and_output`, from ids)."""
    full = max(len(p) + len(r) for p, r in examples)
    ids = torch.full((len(examples), full), pad_id, dtype=torch.long)
    resp = torch.zeros((len(examples), full), dtype=torch.bool)
    for i, (p, r) in enumerate(examples):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        resp[i, len(p) : len(p) + len(r)] = True
    return {"input_ids": ids[:, :-1], "labels": ids[:, 1:], "response_mask": resp[:, 1:]}


# ------------------------------------------------------------------------------------------- shared pieces


class Run:
    """What every trainer shares: config, model, optimizer, RNGs, logs, checkpoints, held-out evaluation."""

    def __init__(self, cfg: dict[str, Any], *, progress: bool = True) -> None:
        self.cfg = cfg
        self.kind = cfg["run"]["kind"]
        self.out = Path(cfg["run"]["out_dir"])
        self.out.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        if cfg["run"]["threads"]:
            torch.set_num_threads(cfg["run"]["threads"])
        t = cfg["task"]
        self.task = make_task(t["name"], digits=t["digits"], heldout_size=t["heldout_size"], seed=t["seed"])
        self.reward_fn = get_reward(t["reward"])
        self.lm = build_lm(cfg, self.task)
        self.model = self.lm.model
        self.tok = self.lm.tokenizer
        o = cfg["optim"]
        self.opt = AdamW(self.model.parameters(), lr=o["lr"], betas=(o["beta1"], o["beta2"]),
                         weight_decay=o["weight_decay"])
        self.gen = torch.Generator().manual_seed(cfg["run"]["seed"])
        self.rng = random.Random(cfg["run"]["seed"])
        self.iteration = 0
        self.state: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.resumed_from: str | None = None
        found = ackpt.latest(self.out)
        if found is not None:
            self._resume(found)
        elif cfg["run"]["init_optimizer"]:
            from lmfs.train.checkpoint import find_checkpoint, read_checkpoint

            payload = read_checkpoint(find_checkpoint(cfg["run"]["init"]))
            if payload.get("optimizer") is None:
                raise ValueError(f"run.init_optimizer: {cfg['run']['init']} holds no optimizer state")
            self.opt.load_state_dict(payload["optimizer"])
        from lmfs.train.metrics import MetricsLog, truncate_metrics

        truncate_metrics(self.out / "metrics.jsonl", self.iteration)
        self.log = MetricsLog(self.out, tensorboard=cfg["run"]["tensorboard"])

    def _resume(self, path: Path) -> None:
        from lmfs.train.checkpoint import read_checkpoint, restore_rng_state

        payload = read_checkpoint(path)
        if (payload.get("extra") or {}).get("align", {}).get("kind") != self.kind:
            raise ValueError(f"{path} is not a checkpoint of a {self.kind} run; use a fresh out_dir")
        self.model.load_state_dict(payload["model"])
        self.opt.load_state_dict(payload["optimizer"])
        restore_rng_state(payload["rng"], self.gen)
        self.iteration = int(payload["iteration"])
        self.state = payload["extra"]["state"]
        py = self.state.pop("stream_rng")
        self.rng.setstate((py[0], tuple(py[1]), py[2]))
        self.history = list(self.state.pop("history", []))
        self.resumed_from = str(path)

    def checkpoint(self, state: dict[str, Any]) -> None:
        full = dict(state, stream_rng=list(self.rng.getstate()), history=list(self.history))
        full["stream_rng"][1] = list(full["stream_rng"][1])
        ackpt.save(self.out, self.lm, self.opt, self.iteration, self.cfg, self.kind, self.gen, full,
                   self.cfg["run"]["keep_checkpoints"])

    def lr(self, total: int) -> float:
        o = self.cfg["optim"]
        return cosine_lr(self.iteration, o["lr"], o["min_lr"], min(o["warmup"], total), total)

    def step_optimizer(self, total: int) -> tuple[float, float]:
        lr = self.lr(total)
        for group in self.opt.param_groups:
            group["lr"] = lr
        norm = clip_grad_norm_(self.model.parameters(), self.cfg["optim"]["grad_clip"])
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.iteration += 1
        return lr, float(norm)

    def max_answer_tokens(self) -> int:
        return self.cfg["task"]["eval_max_tokens"] or self.task.max_answer_chars + 1

    def rollout(self, prompts: list[str], params: SamplingParams) -> list[Any]:
        backend = self.cfg["run"]["rollout_backend"]
        use = None if backend == "auto" else backend == "engine"
        return generate(self.model, self.tok, prompts, params, max_batch=max(len(prompts), 1), generator=self.gen,
                        use_engine=use)

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Greedy accuracy on the held-out problems (does not touch the training RNGs)."""
        probs = self.task.heldout
        params = SamplingParams(temperature=0.0, max_tokens=self.max_answer_tokens(),
                                stop_token_ids=tuple(self.lm.stop_token_ids))
        comps = generate(self.model, self.tok, [p.prompt for p in probs], params, max_batch=256, use_engine=False)
        safe = SafeReward(self.reward_fn)  # a failing verifier counts as not correct, and is reported
        scores = [safe(c.text, p.answer) for c, p in zip(comps, probs, strict=True)]
        correct = sum(1 for s in scores if s is not None and s["reward"] == 1.0)
        lo, hi = wilson_interval(correct, len(probs))
        rec = {"step": self.iteration, "kind": "eval", "heldout_accuracy": correct / len(probs),
               "ci95_low": lo, "ci95_high": hi, "n": len(probs), "reward_errors": safe.errors}
        self.log.write(rec)
        self.history.append(rec)
        return rec

    def finish(self, extra: dict[str, Any]) -> dict[str, Any]:
        from lmfs.atomic import write_json_atomic

        evals = [h for h in self.history if h.get("kind") == "eval"]
        summary = {
            "kind": self.kind, "init": self.cfg["run"]["init"], "model": self.lm.name,
            "parameters": sum(p.numel() for p in self.model.parameters()), "task": self.cfg["task"],
            "iterations": self.iteration, "resumed_from": self.resumed_from,
            "heldout_first": evals[0] if evals else None, "heldout_last": evals[-1] if evals else None,
            "evals": evals, **extra,
        }
        write_json_atomic(self.out / "summary.json", summary)
        self.log.close()
        return summary


def _response_log_probs(model: Any, batch: dict[str, Tensor], entropy: bool = False) -> dict[str, Tensor]:
    return get_response_log_probs(_LogitsView(model), batch["input_ids"], batch["labels"],
                                  return_token_entropy=entropy)


# ------------------------------------------------------------------------------------------- SFT


def _sft_updates(run: Run, examples: Callable[[], list[tuple[list[int], list[int]]]], n_updates: int,
                 total: int, grad_accum: int, bar: Any) -> list[float]:
    """``n_updates`` optimizer updates of SFT; ``examples()`` gives one microbatch. Returns the losses."""
    losses = []
    run.model.train()
    for _ in range(n_updates):
        loss_sum, tokens = 0.0, 0
        for _ in range(grad_accum):
            batch = collate(examples(), run.tok.pad_token_id)
            out = _response_log_probs(run.model, batch)
            n_resp = batch["response_mask"].sum(dim=-1).float().mean().clamp(min=1).item()
            loss, meta = sft_microbatch_train_step(out["log_probs"], batch["response_mask"], grad_accum,
                                                   normalize_constant=n_resp)
            loss_sum += float(loss.detach())
            tokens += int(meta["num_response_tokens"])
        lr, norm = run.step_optimizer(total)
        rec = {"step": run.iteration, "kind": "train", "loss": loss_sum, "lr": lr, "grad_norm": norm,
               "response_tokens": tokens}
        run.log.write(rec)
        losses.append(loss_sum)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.3f}")
    return losses


def train_sft(cfg: dict[str, Any], *, progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
    run = Run(cfg, progress=progress)
    s = cfg["sft"]
    context = run.model.config.context_length
    skipped: dict[str, int] = {}
    notes: list[str] = []
    pool = None
    if s["data"]:
        rows, skipped, notes = read_sft_jsonl(s["data"])
        pool = encode_examples(run.tok, rows, context, skipped)
        if not pool:
            raise ValueError(f"{s['data']}: no usable examples ({skipped}); first problems: {notes}")

    def examples() -> list[tuple[list[int], list[int]]]:
        if pool is not None:
            return [pool[run.rng.randrange(len(pool))] for _ in range(s["batch_size"])]
        probs = [run.task.sample(run.rng) for _ in range(s["batch_size"])]
        return encode_examples(run.tok, [(p.prompt, p.answer) for p in probs], context, skipped)

    if run.iteration == 0:
        run.evaluate()
    total, every = s["steps"], cfg["run"]["eval_every"]
    bar = tqdm(total=total, initial=run.iteration, desc="sft", disable=not progress)
    losses = list(run.state.get("losses", []))
    while run.iteration < total and (stop_at is None or run.iteration < stop_at):
        losses += _sft_updates(run, examples, 1, total, s["grad_accum"], bar)
        if run.iteration % every == 0 or run.iteration == total:
            run.evaluate()
        if run.iteration % cfg["run"]["ckpt_every"] == 0 or run.iteration == total:
            run.checkpoint({"losses": losses})
    bar.close()
    if stop_at is not None and run.iteration < total:
        run.log.close()
        return {"stopped_at": run.iteration}
    first = sum(losses[:10]) / max(len(losses[:10]), 1)
    last = sum(losses[-10:]) / max(len(losses[-10:]), 1)
    return run.finish({"loss_first10": first, "loss_last10": last, "skipped": skipped, "skip_notes": notes})


# ------------------------------------------------------------------------------------------- expert iteration


def train_ei(cfg: dict[str, Any], *, progress: bool = True) -> dict[str, Any]:
    """Expert iteration: sample several responses per problem, keep the verified-correct ones, SFT on them."""
    run = Run(cfg, progress=progress)
    e = cfg["ei"]
    context = run.model.config.context_length
    if run.iteration == 0 and not run.state:
        run.evaluate()
    rounds_done = int(run.state.get("rounds_done", 0))
    total = e["rounds"] * e["sft_steps_per_round"]
    rounds_log = list(run.state.get("rounds", []))
    for rnd in range(rounds_done, e["rounds"]):
        probs = [run.task.sample(run.rng) for _ in range(e["prompts_per_round"])]
        prompts = [p.prompt for p in probs for _ in range(e["samples_per_prompt"])]
        truths = [p.answer for p in probs for _ in range(e["samples_per_prompt"])]
        params = SamplingParams(temperature=e["temperature"], max_tokens=run.max_answer_tokens(),
                                stop_token_ids=tuple(run.lm.stop_token_ids))
        run.model.eval()
        comps = run.rollout(prompts, params)
        safe = SafeReward(run.reward_fn)
        kept = sorted({(pr, c.text) for pr, c, t in zip(prompts, comps, truths, strict=True)
                       if (r := safe(c.text, t)) is not None and r["reward"] == 1.0})
        skipped: dict[str, int] = {}
        pool = encode_examples(run.tok, list(kept), context, skipped)
        info = {"round": rnd + 1, "sampled": len(prompts), "kept": len(pool),
                "kept_fraction": len(pool) / len(prompts), "reward_errors": safe.errors, "skipped": skipped}
        if pool:
            def examples(pool=pool) -> list[tuple[list[int], list[int]]]:
                return [pool[run.rng.randrange(len(pool))] for _ in range(e["batch_size"])]

            info["losses"] = _sft_updates(run, examples, e["sft_steps_per_round"], total, 1, None)
        run.log.write({"step": run.iteration, "kind": "ei_round", **{k: v for k, v in info.items()
                                                                   if isinstance(v, (int, float))}})
        info["eval"] = run.evaluate()
        rounds_log.append(info)
        run.checkpoint({"rounds_done": rnd + 1, "rounds": rounds_log})
    return run.finish({"rounds": rounds_log})


# ------------------------------------------------------------------------------------------- GRPO


def _rollout_batch(run: Run, safe: SafeReward) -> dict[str, Any]:
    g = run.cfg["grpo"]
    probs = [run.task.sample(run.rng) for _ in range(g["prompts_per_step"])]
    prompts = [p.prompt for p in probs for _ in range(g["group_size"])]
    truths = [p.answer for p in probs for _ in range(g["group_size"])]
    params = SamplingParams(temperature=g["temperature"], top_p=g["top_p"],
                            max_tokens=g["max_tokens"] or run.max_answer_tokens(),
                            stop_token_ids=tuple(run.lm.stop_token_ids))
    run.model.eval()
    t0 = time.perf_counter()
    comps = run.rollout(prompts, params)
    seconds = time.perf_counter() - t0
    eos = run.tok.eos_token_id
    rewards = [safe(c.text, t) for c, t in zip(comps, truths, strict=True)]
    # a group with a failed reward is left out whole: its normalization would be wrong
    G = g["group_size"]
    keep_groups = [i for i in range(len(probs)) if all(r is not None for r in rewards[i * G : (i + 1) * G])]
    idx = [i * G + j for i in keep_groups for j in range(G)]
    stats = {"rollout_seconds": seconds, "rollouts": len(comps), "dropped_groups": len(probs) - len(keep_groups),
             "empty_responses": sum(1 for c in comps if not c.token_ids),
             "response_tokens_mean": sum(len(c.token_ids) for c in comps) / max(len(comps), 1),
             "rollout_tokens_per_s": sum(len(c.token_ids) for c in comps) / max(seconds, 1e-9)}
    if not idx:
        return {"stats": stats, "empty": True}
    values = iter([rewards[i]["reward"] for i in idx])
    adv, raw, meta = compute_group_normalized_rewards(
        lambda _r, _t: {"reward": next(values)}, [comps[i].text for i in idx], [truths[i] for i in idx], G,
        g["advantage_eps"], g["normalize_by_std"])
    examples = [(list(comps[i].prompt_ids),
                 list(comps[i].token_ids) + ([eos] if comps[i].finish_reason == "stop" else [])) for i in idx]
    examples = [(p, r if r else [eos]) for p, r in examples]
    batch = collate(examples, run.tok.pad_token_id)
    groups = raw.view(-1, G)
    stats.update({k: float(v) for k, v in meta.items()})
    stats["groups_all_same"] = float((groups.max(dim=-1).values == groups.min(dim=-1).values).float().mean())
    with torch.no_grad():
        old = _response_log_probs(run.model, batch)["log_probs"]
    return {"stats": stats, "empty": False, "input_ids": batch["input_ids"], "labels": batch["labels"],
            "response_mask": batch["response_mask"], "advantages": adv, "raw_rewards": raw, "old_log_probs": old}


def train_grpo(cfg: dict[str, Any], *, progress: bool = True, stop_at: int | None = None) -> dict[str, Any]:
    """GRPO: per step, ``prompts_per_step`` problems × ``group_size`` sampled responses, group-normalized rewards,
    then ``epochs`` passes of minibatch updates with the configured loss (the first pass on-policy)."""
    run = Run(cfg, progress=progress)
    g = cfg["grpo"]
    n_seq = g["prompts_per_step"] * g["group_size"]
    mb = g["minibatch_size"] or n_seq
    micro = g["microbatch_size"] or mb
    if n_seq % mb or mb % micro:
        raise ValueError(f"grpo: {n_seq} rollouts per step must split into minibatches of {mb} and those into "
                         f"microbatches of {micro}")
    per_step = g["epochs"] * (n_seq // mb)
    total = g["steps"] * per_step
    ref = None
    ref_state = run.state.get("reference")
    import copy

    ref = copy.deepcopy(run.model).eval()
    if ref_state is not None:
        ref.load_state_dict(ref_state)
    else:
        run.state["reference"] = {k: v.clone() for k, v in run.model.state_dict().items()}
    for p in ref.parameters():
        p.requires_grad_(False)
    if run.iteration == 0:
        run.evaluate()
    safe = SafeReward(run.reward_fn)
    safe.errors = int(run.state.get("reward_errors", 0))
    buffer = run.state.get("buffer")
    bar = tqdm(total=total, initial=run.iteration, desc=f"grpo {g['loss_type']}", disable=not progress)
    while run.iteration < total and (stop_at is None or run.iteration < stop_at):
        step = run.iteration // per_step
        if buffer is None or (run.iteration % per_step == 0 and buffer.get("step") != step):
            buffer = _rollout_batch(run, safe)
            buffer["step"] = step
            stats = buffer["stats"]
            run.log.write({"step": run.iteration, "kind": "rollout", **stats, "reward_errors": safe.errors})
            if buffer["empty"]:
                if safe.errors and safe.errors >= n_seq:
                    raise RuntimeError(f"every reward call failed; first error: {safe.first_error}")
                run.iteration += per_step  # nothing to learn from this batch; keep the schedule
                buffer = None
                continue
        pos = run.iteration % per_step
        epoch, mb_index = divmod(pos, n_seq // mb)
        n_have = buffer["input_ids"].shape[0]
        perm = torch.randperm(n_have, generator=torch.Generator().manual_seed(
            cfg["run"]["seed"] * 1_000_003 + step * 101 + epoch))
        rows = perm[mb_index * mb * n_have // n_seq : (mb_index + 1) * mb * n_have // n_seq]
        run.model.train()
        accum = max(1, math.ceil(len(rows) / micro))
        agg = {"loss": 0.0, "entropy": 0.0, "clip_fraction": 0.0, "kl_old": 0.0, "kl_ref": 0.0}
        for k in range(accum):
            r = rows[k * micro : (k + 1) * micro]
            batch = {key: buffer[key][r] for key in ("input_ids", "labels", "response_mask")}
            out = _response_log_probs(run.model, batch, entropy=True)
            mask = batch["response_mask"]
            loss, meta = grpo_microbatch_train_step(
                out["log_probs"], mask, accum, g["loss_type"], raw_rewards=buffer["raw_rewards"][r, None],
                advantages=buffer["advantages"][r, None], old_log_probs=buffer["old_log_probs"][r],
                cliprange=g["cliprange"])
            with torch.no_grad():
                lp = out["log_probs"].detach()
                ref_lp = _response_log_probs(ref, batch)["log_probs"]
                # k3 estimator of KL(pi || q): E[exp(q - p) - (q - p) - 1] over the sampled response tokens
                d_ref, d_old = ref_lp - lp, buffer["old_log_probs"][r] - lp
                agg["kl_ref"] += float(masked_mean(d_ref.exp() - d_ref - 1, mask)) / accum
                agg["kl_old"] += float(masked_mean(d_old.exp() - d_old - 1, mask)) / accum
                agg["entropy"] += float(masked_mean(out["token_entropy"].detach(), mask)) / accum
                if "clip_fraction" in meta:
                    agg["clip_fraction"] += float(masked_mean(meta["clipped"].float(), mask)) / accum
            agg["loss"] += float(loss.detach())
        lr, norm = run.step_optimizer(total)
        rec = {"step": run.iteration, "kind": "train", "epoch": epoch, "lr": lr, "grad_norm": norm, **agg,
               "reward_mean": buffer["stats"]["reward_mean"]}
        run.log.write(rec)
        bar.update(1)
        bar.set_postfix(reward=f"{buffer['stats']['reward_mean']:.2f}", loss=f"{agg['loss']:.3f}")
        if run.iteration % cfg["run"]["eval_every"] == 0 or run.iteration == total:
            run.evaluate()
        if run.iteration % cfg["run"]["ckpt_every"] == 0 or run.iteration == total:
            keep = None if run.iteration % per_step == 0 else buffer
            run.checkpoint({"buffer": keep, "reference": run.state["reference"], "reward_errors": safe.errors})
    bar.close()
    if stop_at is not None and run.iteration < total:
        run.log.close()
        return {"stopped_at": run.iteration}
    from lmfs.train.metrics import read_metrics

    recs = read_metrics(run.out / "metrics.jsonl")
    rollouts = [r for r in recs if r.get("kind") == "rollout"]
    return run.finish({
        "loss_type": g["loss_type"], "epochs": g["epochs"], "group_size": g["group_size"],
        "reward_first": rollouts[0]["reward_mean"] if rollouts else None,
        "reward_last5": sum(r["reward_mean"] for r in rollouts[-5:]) / max(len(rollouts[-5:]), 1),
        "reward_errors": safe.errors, "first_reward_error": safe.first_error,
        "dropped_groups": sum(r.get("dropped_groups", 0) for r in rollouts),
        "rollout_tokens_per_s": (sum(r["rollouts"] * r["response_tokens_mean"] for r in rollouts)
                                 / max(sum(r["rollout_seconds"] for r in rollouts), 1e-9)) if rollouts else None,
    })


# ------------------------------------------------------------------------------------------- DPO


def dpo_sequence_ids(tok: Any, prompt: str, response: str, template: str) -> list[int]:
    """The scored sequence: Alpaca template + EOS (as :func:`lmfs.align.dpo.sequence_ids`), or raw
    prompt + response + EOS (the format the synthetic task's models are trained on)."""
    if template == "alpaca":
        from lmfs.align.dpo import sequence_ids

        return sequence_ids(tok, prompt, response)
    return [*tok.encode(prompt), *tok.encode(response), tok.eos_token_id]


def sequence_log_probs(model: Any, seqs: list[list[int]], pad_id: int) -> Tensor:
    """Summed log p(ids[t] | ids[:t]) over t >= 1 for each sequence (batched; equal to
    :func:`lmfs.align.dpo.sequence_log_prob` per sequence)."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n - 1), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s) - 1] = True
    lp = log_softmax(model(ids[:, :-1])).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return torch.where(mask, lp, torch.zeros((), dtype=lp.dtype)).sum(dim=-1)


def dpo_batch_loss(policy: Any, ref: Any, chosen: list[list[int]], rejected: list[list[int]], beta: float,
                   pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Mean DPO loss over a batch (the formula of :func:`lmfs.align.dpo.per_instance_dpo_loss`), the implicit
    reward margins and the policy's own chosen-minus-rejected log-prob gaps."""
    pc = sequence_log_probs(policy, chosen, pad_id)
    pr = sequence_log_probs(policy, rejected, pad_id)
    with torch.no_grad():
        rc = sequence_log_probs(ref, chosen, pad_id)
        rr = sequence_log_probs(ref, rejected, pad_id)
    margin = beta * ((pc - rc) - (pr - rr))
    loss = torch.logaddexp(torch.zeros_like(margin), -margin).mean()
    return loss, margin.detach(), (pc - pr).detach()


def preference_pairs(task: Any, rng: random.Random, n: int, heldout: bool) -> list[tuple[str, str, str]]:
    """(prompt, chosen = the right sum, rejected = the sum with one digit changed or off by a small amount)."""
    out = []
    source = list(task.heldout) if heldout else None
    for i in range(n):
        prob = source[i % len(source)] if source else task.sample(rng)
        ans = prob.answer
        if rng.random() < 0.5:
            pos = rng.randrange(len(ans))
            digit = str((int(ans[pos]) + rng.randrange(1, 10)) % 10)
            wrong = ans[:pos] + digit + ans[pos + 1 :]
            wrong = wrong.lstrip("0") or "0"
        else:
            wrong = str(max(0, int(ans) + rng.choice([-10, -2, -1, 1, 2, 10])))
        if wrong == ans:
            wrong = str(int(ans) + 1)
        out.append((prob.prompt, ans, wrong))
    return out


def train_dpo(cfg: dict[str, Any], *, progress: bool = True) -> dict[str, Any]:
    """DPO against a frozen copy of the starting model; held-out pairs come from the held-out problems."""
    import copy

    run = Run(cfg, progress=progress)
    d = cfg["dpo"]
    ref = copy.deepcopy(run.model).eval()
    if "reference" in run.state:
        ref.load_state_dict(run.state["reference"])
    else:
        run.state["reference"] = {k: v.clone() for k, v in run.model.state_dict().items()}
    for p in ref.parameters():
        p.requires_grad_(False)
    pair_rng = random.Random(cfg["run"]["seed"] + 7)
    train_pairs = preference_pairs(run.task, pair_rng, d["pairs_train"], heldout=False)
    held_pairs = preference_pairs(run.task, random.Random(cfg["run"]["seed"] + 8),
                                  min(d["pairs_heldout"], len(run.task.heldout)), heldout=True)
    t = d["template"]
    enc = lambda pairs: ([dpo_sequence_ids(run.tok, p, c, t) for p, c, _ in pairs],
                         [dpo_sequence_ids(run.tok, p, r, t) for p, _, r in pairs])
    held_c, held_r = enc(held_pairs)
    pad = run.tok.pad_token_id

    def held_out() -> dict[str, Any]:
        with torch.no_grad():
            _, margin, gap = dpo_batch_loss(run.model, ref, held_c, held_r, d["beta"], pad)
        n = len(held_c)
        k_pref = int((gap > 0).sum())
        lo, hi = wilson_interval(k_pref, n)
        rec = {"step": run.iteration, "kind": "dpo_eval", "preference_accuracy": k_pref / n, "ci95_low": lo,
               "ci95_high": hi, "implicit_reward_accuracy": float((margin > 0).float().mean()),
               "mean_margin": float(margin.mean()), "n": n}
        run.log.write(rec)
        run.history.append(rec)
        return rec

    if run.iteration == 0:
        held_out()
        run.evaluate()
    total = d["steps"]
    bar = tqdm(total=total, initial=run.iteration, desc="dpo", disable=not progress)
    while run.iteration < total:
        batch = [train_pairs[run.rng.randrange(len(train_pairs))] for _ in range(d["batch_size"])]
        c, r = enc(batch)
        run.model.train()
        loss, margin, _ = dpo_batch_loss(run.model, ref, c, r, d["beta"], pad)
        loss.backward()
        lr, norm = run.step_optimizer(total)
        run.log.write({"step": run.iteration, "kind": "train", "loss": float(loss.detach()), "lr": lr, "grad_norm": norm,
                       "train_margin": float(margin.mean()),
                       "train_implicit_accuracy": float((margin > 0).float().mean())})
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss):.3f}")
        if run.iteration % cfg["run"]["eval_every"] == 0 or run.iteration == total:
            held_out()
        if run.iteration % cfg["run"]["ckpt_every"] == 0 or run.iteration == total:
            run.checkpoint({"reference": run.state["reference"]})
    bar.close()
    run.evaluate()
    prefs = [h for h in run.history if h.get("kind") == "dpo_eval"]
    return run.finish({"beta": d["beta"], "template": t, "preference_first": prefs[0], "preference_last": prefs[-1],
                       "preference_evals": prefs})


TRAINERS = {"sft": train_sft, "ei": train_ei, "grpo": train_grpo, "dpo": train_dpo}


def train(cfg: dict[str, Any], *, progress: bool = True) -> dict[str, Any]:
    return TRAINERS[cfg["run"]["kind"]](cfg, progress=progress)
