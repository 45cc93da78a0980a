"""``lmfs eval gsm8k|mmlu|ppl --model ...`` (heavy imports inside the handlers)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lmfs.cli import CLIError


def _common(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--model", required=True,
                   help="smollm2 (the SmolLM2-135M-Instruct GGUF), a .gguf file, or an lmfs checkpoint/run folder")
    p.add_argument("--out", default=default_out, help="folder for examples.jsonl and summary.json")
    p.add_argument("--fresh", action="store_true", help="start over instead of continuing examples.jsonl")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--context", type=int, default=2048, help="context length for GGUF models (RoPE table)")
    p.add_argument("--no-progress", action="store_true")


def register(groups: dict[str, Any]) -> None:
    p = groups["root"].add_parser("eval", help="evaluate a model: GSM8K, MMLU, perplexity (resumable)")
    sub = p.add_subparsers(dest="eval_command", metavar="WHAT")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    g = sub.add_parser("gsm8k", help="GSM8K: greedy generation, last number vs the reference")
    _common(g, "runs/eval/gsm8k")
    g.add_argument("--limit", type=int, default=300, help="first N test problems (0: all 1319)")
    g.add_argument("--shots", type=int, default=0, help="solved training problems in the prompt (0: chat prompt)")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--max-tokens", type=int, default=256)
    g.set_defaults(func=cmd_gsm8k)

    m = sub.add_parser("mmlu", help="MMLU: log-likelihood of the answer letters, few-shot from dev")
    _common(m, "runs/eval/mmlu")
    m.add_argument("--per-subject", type=int, default=10, help="first N test questions per subject (0: all)")
    m.add_argument("--shots", type=int, default=5)
    m.add_argument("--subjects", nargs="*", default=None)
    m.set_defaults(func=cmd_mmlu)

    q = sub.add_parser("ppl", help="perplexity on a token file (.npy or raw .bin)")
    _common(q, "runs/eval/ppl")
    q.add_argument("tokens", help="token file written with the model's tokenizer")
    q.add_argument("--seq-len", type=int, default=256)
    q.add_argument("--max-windows", type=int, default=64)
    q.add_argument("--batch-size", type=int, default=4)
    q.add_argument("--dtype", default="uint16", help="dtype of a raw .bin file")
    q.set_defaults(func=cmd_ppl)


def _load(args: argparse.Namespace):
    from lmfs.align.models import load, set_threads

    set_threads(args.threads)
    try:
        return load(args.model, context_length=args.context)
    except (FileNotFoundError, ImportError, ValueError, KeyError) as exc:
        raise CLIError(f"cannot load model {args.model!r}: {exc}", code=1) from None


def _print(summary: dict[str, Any]) -> int:
    brief = {k: v for k, v in summary.items() if k != "by_subject"}
    print(json.dumps(brief, indent=1))
    return 0


def cmd_gsm8k(args: argparse.Namespace) -> int:
    from lmfs.eval.gsm8k import run_gsm8k

    lm = _load(args)
    try:
        return _print(run_gsm8k(lm, args.out, limit=args.limit or None, shots=args.shots,
                                batch_size=args.batch_size, max_tokens=args.max_tokens, fresh=args.fresh,
                                progress=not args.no_progress))
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def cmd_mmlu(args: argparse.Namespace) -> int:
    from lmfs.eval.mmlu import run_mmlu

    lm = _load(args)
    try:
        return _print(run_mmlu(lm, args.out, per_subject=args.per_subject or None, shots=args.shots,
                               subjects=args.subjects or None, fresh=args.fresh, progress=not args.no_progress))
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def cmd_ppl(args: argparse.Namespace) -> int:
    from lmfs.eval.ppl import run_ppl

    lm = _load(args)
    try:
        return _print(run_ppl(lm, args.tokens, args.out, seq_len=args.seq_len, max_windows=args.max_windows,
                              batch_size=args.batch_size, dtype=args.dtype, fresh=args.fresh,
                              progress=not args.no_progress))
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
