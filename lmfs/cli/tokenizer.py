"""``lmfs tokenizer train|encode|decode|compress``.

Examples::

    lmfs tokenizer train ../shared/data/corpus/gutenberg_train.txt --vocab-size 10000 \\
        --special-token '<|endoftext|>' --out runs/tokenizers/gutenberg-10k
    lmfs tokenizer encode ../shared/data/corpus/gutenberg_valid.txt --tokenizer runs/tokenizers/gutenberg-10k \\
        --out runs/data/gutenberg-10k/valid.npy
    lmfs tokenizer decode runs/data/gutenberg-10k/valid.npy --tokenizer runs/tokenizers/gutenberg-10k --count 50
    lmfs tokenizer compress ../shared/data/corpus/gutenberg_valid.txt --tokenizer runs/tokenizers/gutenberg-10k
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lmfs.cli import CLIError


def register(groups: dict[str, Any]) -> None:
    p = groups["root"].add_parser("tokenizer", help="train, apply and inspect byte-level BPE tokenizers")
    sub = p.add_subparsers(dest="tokenizer_command", metavar="WHAT")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    t = sub.add_parser("train", help="train a BPE tokenizer on a UTF-8 text file")
    t.add_argument("corpus", help="UTF-8 text file")
    t.add_argument("--vocab-size", type=int, required=True, help="total vocab: 256 bytes + specials + merges")
    t.add_argument("--special-token", action="append", default=[], help="special token (repeatable)")
    t.add_argument("--out", required=True, help="folder for vocab.json, merges.txt, tokenizer.json")
    t.add_argument(
        "--workers",
        type=int,
        default=None,
        help="pre-tokenization processes (default: all cores; with the C kernels at most one per 8 MB)",
    )
    t.add_argument("--no-progress", action="store_true")
    _backend_arg(t)
    t.set_defaults(func=_user_errors(_train))

    e = sub.add_parser("encode", help="tokenize a text file into a .npy token array (parallel)")
    e.add_argument("input", help="UTF-8 text file")
    _tokenizer_args(e)
    e.add_argument("--out", required=True, help="output .npy (uint16 when the vocab fits, else uint32)")
    e.add_argument("--dtype", choices=["uint16", "uint32"], default=None)
    e.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes (default: all cores; with the C kernels at most one per 8 MB)",
    )
    e.add_argument("--no-progress", action="store_true")
    _backend_arg(e)
    e.set_defaults(func=_user_errors(_encode))

    d = sub.add_parser("decode", help="turn a .npy token array (or ids on the command line) back into text")
    d.add_argument("input", nargs="?", help=".npy token array")
    d.add_argument("--ids", type=int, nargs="*", default=None, help="ids instead of a file")
    _tokenizer_args(d)
    d.add_argument("--start", type=int, default=0, help="first token to decode")
    d.add_argument("--count", type=int, default=None, help="number of tokens (default: all)")
    d.add_argument("--out", default=None, help="write the text here instead of stdout")
    d.set_defaults(func=_user_errors(_decode))

    c = sub.add_parser("compress", help="bytes per token of a tokenizer (and GPT-2) on a text file")
    c.add_argument("input", help="UTF-8 text file")
    _tokenizer_args(c)
    c.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    c.set_defaults(func=_user_errors(_compress))


def _user_errors(func):
    """Run a subcommand; a bad input (missing file, not UTF-8, malformed tokenizer files, bad settings) prints one
    line and exits 2 instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (ValueError, OSError) as exc:
            raise CLIError(str(exc)) from None

    return run


def _backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=["auto", "c", "python"],
        default=None,
        help="C kernels or the pure-Python code (default: $LMFS_TOKENIZER_BACKEND, else auto = C when built)",
    )


def _tokenizer_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", default=None, help="folder written by `lmfs tokenizer train`")
    p.add_argument("--gpt2", action="store_true", help="use OpenAI's GPT-2 tokenizer (shared data files)")


def _load(args: argparse.Namespace):
    from lmfs.tokenizer.formats import load_gpt2, load_tokenizer

    if args.gpt2:
        return load_gpt2(*_gpt2_files())
    if not args.tokenizer:
        raise CLIError("pass --tokenizer DIR (from `lmfs tokenizer train`) or --gpt2")
    return load_tokenizer(args.tokenizer)


def _gpt2_files() -> tuple[Path, Path]:
    from lmfs.paths import shared_data

    return shared_data("tokenizers", "gpt2_encoder.json"), shared_data("tokenizers", "gpt2_vocab.bpe")


def _train(args: argparse.Namespace) -> int:
    from lmfs.atomic import write_text_atomic
    from lmfs.tokenizer.formats import save_tokenizer
    from lmfs.tokenizer.train import TrainStats, train_bpe

    stats = TrainStats()
    vocab, merges = train_bpe(
        args.corpus,
        args.vocab_size,
        args.special_token,
        num_workers=args.workers,
        progress=not args.no_progress,
        stats=stats,
        backend=args.backend,
    )
    info = {
        "corpus": str(args.corpus),
        "vocab_size": len(vocab),
        "num_merges": len(merges),
        "pretokenize_s": round(stats.pretokenize_s, 3),
        "merge_s": round(stats.merge_s, 3),
        "total_s": round(stats.total_s, 3),
        "distinct_pretokens": stats.distinct_pretokens,
        "peak_rss_mb": round(stats.peak_rss_mb, 1),
        "peak_worker_rss_mb": round(stats.peak_worker_rss_mb, 1),
        "backend": stats.extra.get("backend", "python"),
    }
    out = save_tokenizer(args.out, vocab, merges, args.special_token, meta={"trained": info})
    write_text_atomic(out / "train_stats.json", json.dumps(info, indent=2) + "\n")
    print(
        f"trained {len(vocab)} tokens ({len(merges)} merges) in {stats.total_s:.1f} s "
        f"(pre-tokenize {stats.pretokenize_s:.1f} s, merges {stats.merge_s:.1f} s); "
        f"peak RSS {stats.peak_rss_mb:.0f} MB (largest worker {stats.peak_worker_rss_mb:.0f} MB), "
        f"{info['backend']} backend -> {out}"
    )
    return 0


def _encode(args: argparse.Namespace) -> int:
    from lmfs.atomic import write_text_atomic
    from lmfs.tokenizer.encode_file import encode_file

    tok = _load(args)
    if args.backend:
        from lmfs.tokenizer.tokenizer import Tokenizer

        tok = Tokenizer(tok.vocab, tok.merges, tok.special_tokens, tok.pattern, backend=args.backend)
    st = encode_file(
        tok, args.input, args.out, num_workers=args.workers, dtype=args.dtype, progress=not args.no_progress
    )
    info = {
        "input": str(args.input),
        "out": str(args.out),
        "bytes": st.bytes,
        "tokens": st.tokens,
        "bytes_per_token": round(st.bytes_per_token, 4),
        "seconds": round(st.seconds, 3),
        "mb_per_s": round(st.mb_per_s, 2),
        "dtype": st.dtype,
        "backend": st.backend,
    }
    write_text_atomic(Path(str(args.out) + ".json"), json.dumps(info, indent=2) + "\n")
    print(
        f"{st.tokens:,} tokens ({st.dtype}) from {st.bytes / 1e6:.1f} MB in {st.seconds:.1f} s: "
        f"{st.mb_per_s:.1f} MB/s, {st.bytes_per_token:.3f} bytes/token, {st.backend} backend -> {args.out}"
    )
    return 0


def _decode(args: argparse.Namespace) -> int:
    import numpy as np

    from lmfs.atomic import write_text_atomic

    tok = _load(args)
    if args.ids is not None:
        ids = args.ids
    elif args.input:
        arr = np.load(args.input, mmap_mode="r")
        end = None if args.count is None else args.start + args.count
        ids = arr[args.start : end].tolist()
    else:
        raise CLIError("pass a .npy file or --ids")
    text = tok.decode(ids)
    if args.out:
        write_text_atomic(args.out, text)
    else:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
    return 0


def _compress(args: argparse.Namespace) -> int:
    from lmfs.atomic import write_text_atomic
    from lmfs.tokenizer.formats import load_gpt2

    text = Path(args.input).read_text(encoding="utf-8")
    n_bytes = len(text.encode("utf-8"))
    rows = {}
    if args.tokenizer:
        rows[Path(args.tokenizer).name] = _load(argparse.Namespace(gpt2=False, tokenizer=args.tokenizer))
    rows["gpt2"] = load_gpt2(*_gpt2_files())
    result = {"input": str(args.input), "bytes": n_bytes, "tokenizers": {}}
    for name, tok in rows.items():
        n = len(tok.encode(text))
        result["tokenizers"][name] = {
            "vocab_size": len(tok),
            "tokens": n,
            "bytes_per_token": round(n_bytes / n, 4),
        }
        print(f"{name:>24}: vocab {len(tok):>6,}  {n:>10,} tokens  {n_bytes / n:.3f} bytes/token")
    if args.json:
        write_text_atomic(Path(args.json), json.dumps(result, indent=2) + "\n")
    return 0
