"""``lmfs generate --checkpoint RUN_OR_FILE --prompt TEXT``: stream a continuation to stdout."""

from __future__ import annotations

import argparse

from lmfs.cli import CLIError


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    p = groups["root"].add_parser(
        "generate",
        help="sample text from a trained checkpoint, streamed token by token",
        description="Continue a prompt with a model trained by `lmfs train`. The tokenizer is the one the run "
        "recorded (config key `tokenizer`) unless --tokenizer is given.",
    )
    p.add_argument(
        "--checkpoint", required=True, help="checkpoint file, or a run folder (uses its newest checkpoint)"
    )
    p.add_argument("--prompt", default="", help="text to continue (empty: start a new document)")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass, in (0, 1]")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument(
        "--tokenizer", default=None, help="tokenizer folder (vocab.json, merges.txt) overriding the run's"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--no-kv-cache",
        action="store_true",
        help="re-run the whole context for every token instead of caching keys/values (slower; for comparison)",
    )
    p.add_argument(
        "--draft",
        default=None,
        help="speculative decoding: a smaller checkpoint (same tokenizer) that proposes tokens for --checkpoint",
    )
    p.add_argument("--draft-k", type=int, default=4, help="tokens the draft proposes per target pass")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys

    from lmfs.generate import generate_text, load_run_tokenizer
    from lmfs.train.checkpoint import CheckpointError, load_model

    try:
        model, cfg = load_model(args.checkpoint, device=args.device)
        tokenizer = load_run_tokenizer(cfg, args.tokenizer)
        draft = load_model(args.draft, device=args.device)[0] if args.draft else None
    except (FileNotFoundError, CheckpointError, RuntimeError) as exc:
        raise CLIError(str(exc)) from None

    def emit(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    from lmfs.generate.speculative import SpeculativeStats

    stats = SpeculativeStats() if draft is not None else None
    try:
        for i in range(args.num_samples):
            if args.num_samples > 1:
                emit(f"\n--- sample {i + 1} ---\n")
            emit(args.prompt)
            seed = None if args.seed is None else args.seed + i
            generate_text(
                model,
                tokenizer,
                args.prompt,
                args.max_new_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                seed=seed,
                on_text=emit,
                device=args.device,
                kv_cache=not args.no_kv_cache,
                draft=draft,
                draft_k=args.draft_k,
                stats=stats,
            )
            emit("\n")
    except ValueError as exc:
        emit("\n")
        raise CLIError(str(exc)) from None
    if stats is not None:
        print(
            f"speculative: {stats.acceptance_rate:.0%} of {stats.proposed} drafts accepted, "
            f"{stats.tokens_per_target_call:.2f} tokens per target pass",
            file=sys.stderr,
        )
    return 0
