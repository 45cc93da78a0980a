"""``lmfs data run|synth|train-quality|evaluate|identify`` (the library is imported inside the handlers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfs.cli import CLIError


def register(groups: dict[str, Any]) -> None:
    p = groups["root"].add_parser("data", help="crawl filtering: pipeline runs, synthetic crawl, classifiers")
    sub = p.add_subparsers(dest="data_command", metavar="WHAT")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    r = sub.add_parser("run", help="run (or resume) the filtering pipeline of a TOML config")
    r.add_argument("config", help="pipeline config (.toml): inputs, output_dir, [executor], [[steps]]")
    r.add_argument("--executor", choices=("local", "ray"), default=None, help="override [executor].kind")
    r.add_argument("--workers", type=int, default=None, help="override [executor].workers")
    r.add_argument("--address", default=None, help="Ray cluster address (implies --executor ray)")
    r.add_argument("--output-dir", default=None, help="override output_dir")
    r.add_argument("--truth", default=None, help="ground truth (truth.jsonl of `lmfs data synth`): add "
                   "per-step precision/recall to the summary")
    r.add_argument("--report", default=None, metavar="NAME",
                   help="also store the summary as reports/data/data/pipeline_NAME.json for the report")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("synth", help="write a synthetic crawl (WARC shards + truth.jsonl) from the shared texts")
    s.add_argument("out_dir")
    s.add_argument("--docs", type=int, default=1000)
    s.add_argument("--shards", type=int, default=4)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_synth)

    q = sub.add_parser("train-quality", help="train the fastText quality classifier (wiki vs cc)")
    q.add_argument("--out", default="reports/data/data/quality_model.ftz", help="model path (.ftz)")
    q.add_argument("--positives", type=int, default=3000, help="number of positive training samples")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_train_quality)

    c = sub.add_parser("classify", help="language, harmful-content and quality labels of a text file")
    c.add_argument("file", help="a UTF-8 text file ('-' for stdin)")
    c.set_defaults(func=cmd_classify)


def cmd_run(args) -> int:
    from lmfs.data.pipeline import PipelineError, load_config, run_pipeline

    try:
        cfg = load_config(args.config)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    if args.address:
        cfg.executor = {**cfg.executor, "kind": "ray", "address": args.address}
    if args.executor:
        cfg.executor = {**cfg.executor, "kind": args.executor}
    if args.workers is not None:
        if args.workers < 1:
            raise CLIError(f"--workers must be >= 1, got {args.workers}")
        cfg.executor = {**cfg.executor, "workers": args.workers}
    if args.output_dir:
        cfg.output_dir = str(Path(args.output_dir).resolve())
    try:
        summary = run_pipeline(cfg, progress=not args.no_progress)
    except PipelineError as e:
        raise CLIError(str(e), code=1) from None
    if args.truth:
        from lmfs.data.evaluate import step_precision_recall
        from lmfs.data.synth import load_truth

        summary["evaluation"] = step_precision_recall(summary, load_truth(args.truth))
        from lmfs.atomic import write_json_atomic

        write_json_atomic(Path(cfg.output_dir) / "summary.json", summary)
    print(format_funnel(summary))
    if args.report:
        from lmfs.atomic import write_json_atomic
        from lmfs.paths import reports_dir

        slim = {**summary, "steps": [{k: v for k, v in s.items() if k != "dropped_ids"} for s in summary["steps"]]}
        target = reports_dir() / "data" / "data" / f"pipeline_{args.report}.json"
        write_json_atomic(target, slim)
        print(f"stored {target}")
    return 0


def format_funnel(summary: dict[str, Any]) -> str:
    lines = [f"{'step':<14}{'docs in':>9}{'docs out':>10}{'MB out':>9}  dropped"]
    for s in summary["steps"]:
        drops = ", ".join(f"{k} {v}" for k, v in sorted(s["dropped"].items())) or "-"
        lines.append(f"{s['name']:<14}{s['in_docs']:>9}{s['out_docs']:>10}{s['out_bytes'] / 1e6:>9.2f}  {drops}")
    ev = summary.get("evaluation")
    if ev:
        lines.append("")
        lines.append("precision / recall against the ground truth:")
        for r in ev["steps"]:
            if r.get("target"):
                p = "-" if r["precision"] is None else f"{r['precision']:.3f}"
                rc = "-" if r["recall"] is None else f"{r['recall']:.3f}"
                lines.append(f"  {r['step']:<12} target {r['target']:<15} precision {p}  recall {rc}")
        o = ev["overall"]
        lines.append(f"  kept clean pages: precision {o['precision']:.3f}  recall {o['recall']:.3f}")
    lines.append(f"{summary['documents_out']} documents out in {summary['seconds']:.1f} s -> {summary['output_dir']}")
    return "\n".join(lines)


def cmd_synth(args) -> int:
    from lmfs.data.synth import generate_crawl

    try:
        paths = generate_crawl(args.out_dir, args.docs, args.shards, args.seed)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    print(f"wrote {len(paths)} shards and truth.jsonl to {args.out_dir}")
    return 0


def cmd_train_quality(args) -> int:
    from lmfs.data.quality import train_quality

    try:
        metrics = train_quality(args.out, n_positive=args.positives, seed=args.seed)
    except FileNotFoundError as e:
        raise CLIError(f"{e} (the training data comes from ../shared; set LMFS_SHARED_DIR)") from None
    print(json.dumps(metrics["held_out"], indent=1))
    print(f"model -> {args.out}")
    return 0


def cmd_classify(args) -> int:
    import sys

    from lmfs.data.harmful import classify_nsfw, classify_toxic_speech
    from lmfs.data.langid import identify_language
    from lmfs.data.quality import classify_quality

    if args.file == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.file).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise CLIError(f"{args.file}: {e.strerror}") from None
    for name, fn in (("language", identify_language), ("nsfw", classify_nsfw), ("toxic", classify_toxic_speech),
                     ("quality", classify_quality)):
        label, score = fn(text)
        print(f"{name:<9}{label:<10}{score:.3f}")
    return 0
