"""Publish a finished run: full validation loss, samples, and the small files worth committing.

``export_run`` writes to ``dest``: ``metrics.jsonl`` (copied), ``summary.json`` (config, parameters, tokens,
wall time, validation loss over the whole file) and ``samples.txt``. Checkpoints stay in the run folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from lmfs.atomic import atomic_path, write_text_atomic


def _portable(path: str) -> str:
    """``path`` relative to the checkout when it lies inside it (so committed summaries name no machine paths)."""
    from lmfs.paths import project_root

    try:
        return str(Path(path).resolve().relative_to(project_root().resolve()))
    except ValueError:
        return path


def portable_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A copy of a run config with its file paths made relative to the checkout where possible (the paths are
    the run's keys, at the top level of both the nested and the flat layout)."""
    from lmfs.train.config import PATH_FIELDS

    keys = (*PATH_FIELDS, "out_dir")
    return {k: (_portable(v) if k in keys and isinstance(v, str) and v else v) for k, v in cfg.items()}


def export_run(
    run_dir: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    val_data: str | None = None,
    prompts: list[str] | None = None,
    max_new_tokens: int = 120,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate the newest checkpoint of ``run_dir`` on the whole ``val_data`` file (default: the run's),
    sample a continuation of each prompt, and write the bundle to ``dest``. Returns the summary dict."""
    from lmfs.train.checkpoint import find_checkpoint, load_model, read_checkpoint
    from lmfs.train.config import MODEL_TABLE
    from lmfs.train.data import load_tokens
    from lmfs.train.evaluate import evaluate_tokens

    run = Path(run_dir)
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = find_checkpoint(run)
    model, cfg = load_model(ckpt, device=device)
    extra = read_checkpoint(ckpt).get("extra", {})
    summary: dict[str, Any] = {
        "checkpoint": ckpt.name,
        "steps": int(read_checkpoint(ckpt)["iteration"]),
        "n_params": sum(p.numel() for p in model.parameters()),
        "n_params_non_embedding": model.num_parameters(non_embedding=True)
        if hasattr(model, "num_parameters")
        else None,
        "tokens_seen": extra.get("tokens_seen"),
        "wall_seconds": extra.get("wall_seconds"),
        "final_train_loss": extra.get("train_loss"),
        "sampled_val_loss": extra.get("val_loss"),
        "config": portable_config(cfg),
    }
    val_path = val_data or cfg.get("val_data")
    if val_path:
        data = load_tokens(val_path, dtype=cfg.get("data_dtype", "uint16"))
        ev = evaluate_tokens(
            model,
            data,
            cfg[MODEL_TABLE]["context_length"],
            batch_size=cfg.get("batch_size", 16),
            device=device,
            autocast_bf16=bool(cfg.get("autocast_bf16")),
            progress=progress,
        )
        summary.update(
            {
                "val_file": _portable(str(val_path)),
                "val_loss": ev["loss"],
                "val_ppl": ev["ppl"],
                "val_tokens": int(ev["tokens"]),
            }
        )
    if prompts:
        from lmfs.generate import generate_text, load_run_tokenizer

        tokenizer = load_run_tokenizer(cfg)
        blocks = []
        for i, prompt in enumerate(prompts):
            text = generate_text(
                model,
                tokenizer,
                prompt,
                max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed + i,
                device=device,
            )
            blocks.append(
                f"=== prompt: {prompt!r} (temperature {temperature}, top_p {top_p}, seed {seed + i})\n"
                f"{prompt}{text}\n"
            )
        write_text_atomic(out / "samples.txt", "\n".join(blocks))
    if (run / "metrics.jsonl").is_file():
        with atomic_path(out / "metrics.jsonl") as tmp:
            shutil.copyfile(run / "metrics.jsonl", tmp)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
