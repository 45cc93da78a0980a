"""``lmfs scaling fit|predict|simulate|sweep|flops`` (heavy imports inside the handlers)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lmfs.cli import CLIError
from lmfs.cli.nn import LazyArgumentParser, add_model_flags, model_from_flags

DEFAULT_SWEEP_TABLE = "reports/data/scaling/sweep_cpu.csv"


def register(groups: dict[str, Any]) -> None:
    p = groups["root"].add_parser("scaling", help="scaling laws: fits, predictions, simulator, sweeps, FLOPs")
    sub = p.add_subparsers(dest="scaling_command", metavar="WHAT", parser_class=LazyArgumentParser)
    p.set_defaults(func=lambda args: p.print_help() or 2)

    f = sub.add_parser("fit", help="fit Chinchilla Approaches 1-3 to a table, with bootstrap intervals")
    f.add_argument(
        "--table",
        default="isoflops",
        help="epoch | isoflops | sweep | path to a CSV/JSON/JSONL (columns N, C or D, loss)",
    )
    f.add_argument(
        "--approach",
        type=int,
        nargs="+",
        default=None,
        choices=(1, 2, 3),
        help="approaches to fit (default: 1 2 3; only 3 for the epoch table, which has no isoFLOP budgets)",
    )
    f.add_argument("--boot", type=int, default=200, help="bootstrap resamples (0: none)")
    f.add_argument("--targets", type=float, nargs="+", default=[1e23, 1e24], help="budgets to predict at")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", default=None, help="write the JSON summary here (atomically)")
    f.add_argument(
        "--duplicates",
        choices=("keep", "merge"),
        default="keep",
        help="exactly identical rows (always warned about): keep them all, or merge each group into one row "
        "(duplicates count twice in the fit and narrow the bootstrap intervals)",
    )
    f.set_defaults(func=cmd_fit)

    pr = sub.add_parser("predict", help="compute-optimal N, D and loss at budgets from a fitted law")
    pr.add_argument("--table", default="epoch", help="table to fit by Approach 3 (as in `fit`)")
    pr.add_argument(
        "--params",
        type=float,
        nargs=5,
        metavar=("E", "A", "B", "ALPHA", "BETA"),
        default=None,
        help="use these constants instead of fitting a table",
    )
    pr.add_argument("--budget", type=float, nargs="+", default=[1e23, 1e24])
    pr.set_defaults(func=cmd_predict)

    s = sub.add_parser("simulate", help="the budgeted training-API simulator: one query, or the strategy")
    s.add_argument("--budget", type=float, default=2e18, help="total FLOPs budget (default 2e18)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--state", default=None, help="JSON file keeping the queries between calls")
    s.add_argument(
        "--query",
        type=float,
        nargs=6,
        default=None,
        metavar=("D_MODEL", "LAYERS", "HEADS", "BATCH", "LR", "FLOPS"),
        help="run one query",
    )
    s.add_argument(
        "--target", type=float, default=1e19, help="budget the strategy predicts for (default 1e19)"
    )
    s.add_argument("--out", default=None, help="write the strategy's runs and evaluation here (JSON)")
    s.set_defaults(func=cmd_simulate)

    w = sub.add_parser("sweep", help="train a grid of small lmfs models at several FLOP budgets (resumable)")
    w.add_argument(
        "--budgets", type=float, nargs="+", default=None, help="FLOP budgets (exact training FLOPs)"
    )
    w.add_argument(
        "--sizes", type=float, nargs="+", default=None, help="target non-embedding parameter counts"
    )
    w.add_argument("--max-sizes", type=int, default=None, help="per budget, keep the largest this-many sizes")
    w.add_argument("--batch-size", type=int, default=None)
    w.add_argument("--context-length", type=int, default=None)
    w.add_argument("--lr", type=float, default=None)
    w.add_argument("--eval-batches", type=int, default=None)
    w.add_argument("--min-steps", type=int, default=None)
    w.add_argument("--device", default=None, help="cpu | cuda | auto")
    w.add_argument("--threads", type=int, default=None)
    w.add_argument("--train-data", default=None)
    w.add_argument("--val-data", default=None)
    w.add_argument("--runs-dir", default=None, help="checkpoints of each run (default runs/scaling/cpu)")
    w.add_argument("--table", default=None, help=f"results table (default {DEFAULT_SWEEP_TABLE})")
    w.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    w.add_argument("--no-fit", action="store_true", help="skip fitting the table when the sweep is done")
    w.add_argument("--boot", type=int, default=200, help="bootstrap resamples for the fit")
    w.set_defaults(func=cmd_sweep)

    fl = sub.add_parser(
        "flops",
        help="parameters, FLOPs (by component), 6ND error and memory of one model",
        description="Exact parameters, FLOPs and memory of one training step of a model shape: a --preset "
        "(default cs336-tinystories) and any shape flags (they win).",
        setup=_flops_flags,
    )
    fl.set_defaults(func=cmd_flops)


def _flops_flags(fl: argparse.ArgumentParser) -> None:
    add_model_flags(fl, default_preset="cs336-tinystories")
    fl.add_argument("--batch-size", type=int, default=32)
    fl.add_argument("--tokens", type=float, default=None, help="training tokens for the 6ND comparison")


# ------------------------------------------------------------------------------------------------ handlers


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def cmd_fit(args: argparse.Namespace) -> int:
    from lmfs.atomic import write_json_atomic
    from lmfs.scaling.analysis import analyze_table, predictions_frame
    from lmfs.scaling.tables import check_fittable, duplicate_rows, load_named

    try:
        df = check_fittable(load_named(args.table), args.table)
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(" ".join(str(exc).split())) from None
    groups = duplicate_rows(df)
    if groups:
        shown = "; ".join(" = ".join(str(i + 1) for i in g) for g in groups[:8])
        extra = f" (+{len(groups) - 8} more groups)" if len(groups) > 8 else ""
        what = (
            "merged into one row each (--duplicates merge)"
            if args.duplicates == "merge"
            else "kept: they count more than once and narrow the bootstrap intervals; pass --duplicates merge to "
            "keep one of each"
        )
        print(f"lmfs scaling: warning: identical rows {shown}{extra}; {what}", file=sys.stderr)
        if args.duplicates == "merge":
            df = df.drop_duplicates(subset=["n_params", "compute", "tokens", "loss"]).reset_index(drop=True)
    approaches = args.approach or ((3,) if args.table == "epoch" else (1, 2, 3))
    try:
        summary = analyze_table(
            df,
            name=args.table,
            approaches=approaches,
            targets=args.targets,
            n_boot=args.boot,
            seed=args.seed,
            progress=sys.stderr.isatty(),
        )
    except ValueError as exc:  # a table that passed the checks but still cannot be fitted
        raise CLIError(f"{args.table}: {' '.join(str(exc).split())}") from None
    print(
        f"table {args.table}: {summary['rows']} rows, {summary['budgets']} distinct budgets, "
        f"{args.boot} bootstrap resamples (95% percentile intervals)"
    )
    for ap, res in summary["approaches"].items():
        if "error" in res:
            print(f"Approach {ap}: {res['error']}")
            continue
        line = f"Approach {ap}: N_opt ∝ C^{res['a']:.4f}"
        if "a_lo" in res:
            line += f" [{res['a_lo']:.4f}, {res['a_hi']:.4f}]"
        if ap == "3":
            p = res["params"]
            line += "  " + "  ".join(f"{k}={_fmt(v)}" for k, v in p.items())
        print(line)
        for note in res.get("notes", []):
            print(f"  note: {note}")
    frame = predictions_frame(summary)
    cols = [
        c
        for c in (
            "approach",
            "compute",
            "n_opt",
            "n_opt_lo",
            "n_opt_hi",
            "d_opt",
            "loss",
            "loss_lo",
            "loss_hi",
        )
        if c in frame
    ]
    print(frame[cols].to_string(index=False, float_format=_fmt))
    if args.out:
        write_json_atomic(args.out, summary, default=float)
        print(f"wrote {args.out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from lmfs.scaling.parametric import ChinchillaParams, fit_chinchilla
    from lmfs.scaling.tables import load_named

    if args.params:
        p = ChinchillaParams(*args.params)
        source = "given constants"
    else:
        df = load_named(args.table)
        p = fit_chinchilla(df["n_params"], df["tokens"], df["loss"]).params
        source = f"Approach 3 on {args.table}"
    print(f"{source}: " + "  ".join(f"{k}={_fmt(v)}" for k, v in p.as_dict().items()) + f"  a={p.a:.4f}")
    print(f"{'budget':>10} {'N_opt':>12} {'D_opt':>12} {'D/N':>8} {'loss':>8}")
    for c in args.budget:
        n, d = p.allocation(c)
        print(
            f"{c:>10.3g} {float(n):>12.4g} {float(d):>12.4g} {float(d / n):>8.2f} {float(p.loss(n, d)):>8.4f}"
        )
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lmfs.scaling.simulator import BudgetExceededError, TrainingAPISimulator
    from lmfs.scaling.strategy import run_isoflop_strategy

    if args.state and Path(args.state).exists():
        sim = TrainingAPISimulator.load(args.state)
    else:
        sim = TrainingAPISimulator(total_budget=args.budget, seed=args.seed)
    if args.query:
        d, layers, heads, bs, lr, flops = args.query
        try:
            loss = sim.query(int(d), int(layers), int(heads), int(bs), lr, flops)
        except BudgetExceededError as exc:
            raise CLIError(str(exc), code=1) from None
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        print(f"loss {loss:.5f}   spent {sim.spent:.4g} of {sim.total_budget:.4g} FLOPs")
    else:
        res = run_isoflop_strategy(sim, target=args.target)
        print(res.runs.to_string(index=False, float_format=_fmt))
        print(json.dumps({k: float(f"{v:.6g}") for k, v in res.summary().items()}, indent=1))
        print(
            f"strategy: N_opt predicted {res.n_opt_pred:.4g} vs true {res.n_opt_true:.4g} "
            f"(ratio {res.n_ratio:.3f}); loss {res.loss_pred:.4f} vs {res.loss_true:.4f} "
            f"({100 * res.loss_error:+.2f}%); spent {res.spent:.3g} of {sim.total_budget:.3g}"
        )
        if args.out:
            from lmfs.atomic import write_json_atomic

            write_json_atomic(
                args.out,
                {
                    "summary": res.summary(),
                    "lr_law": list(res.lr_law),
                    "truth": sim.to_dict()["truth"],
                    "seed": sim.seed,
                    "runs": res.runs.to_dict(orient="records"),
                },
                default=float,
            )
            print(f"wrote {args.out}")
    if args.state:
        sim.save(args.state)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lmfs.scaling.sweep import SweepSpec, plan, run_sweep

    spec = SweepSpec()
    for arg, fld in (
        ("budgets", "budgets"),
        ("sizes", "sizes"),
        ("max_sizes", "max_sizes"),
        ("batch_size", "batch_size"),
        ("context_length", "context_length"),
        ("lr", "lr"),
        ("eval_batches", "eval_batches"),
        ("min_steps", "min_steps"),
        ("device", "device"),
        ("threads", "threads"),
        ("train_data", "train_data"),
        ("val_data", "val_data"),
        ("runs_dir", "runs_dir"),
        ("table", "table"),
    ):
        value = getattr(args, arg)
        if value is not None:
            setattr(spec, fld, tuple(value) if isinstance(value, list) else value)
    if args.dry_run:
        runs, notes = plan(spec)
        for note in notes:
            print(note)
        for r in runs:
            s = r["shape"]
            print(
                f"{r['run_id']:>22}  d={s.d_model:<4} L={s.num_layers:<2} H={s.num_heads:<2} d_ff={s.d_ff:<5} "
                f"steps={r['steps']:<6} tokens={r['tokens']:<9} FLOPs={r['compute_actual']:.3g}"
            )
        print(f"{len(runs)} runs, {sum(r['compute_actual'] for r in runs):.3g} FLOPs in all")
        return 0
    for path in (spec.train_data, spec.val_data):
        if not Path(path).exists():
            raise CLIError(
                f"token file {path} not found; make it with the tokenizer (runs/data/gutenberg-10k) or "
                "pass --train-data/--val-data"
            )
    df = run_sweep(spec)
    print(df.to_string(index=False, float_format=_fmt))
    if not args.no_fit and df["compute"].nunique() >= 2:
        from lmfs.atomic import write_json_atomic
        from lmfs.scaling.analysis import analyze_table
        from lmfs.scaling.sweep import spec_dict
        from lmfs.scaling.tables import canonical

        summary = analyze_table(
            canonical(df, spec.table), name=Path(spec.table).stem, n_boot=args.boot, targets=[1e13, 1e14]
        )
        summary["spec"] = spec_dict(spec)
        out = Path(spec.table).with_name(Path(spec.table).stem + "_fit.json")
        write_json_atomic(out, summary, default=float)
        for ap, res in summary["approaches"].items():
            print(f"Approach {ap}: " + (res["error"] if "error" in res else f"N_opt ∝ C^{res['a']:.3f}"))
        print(f"wrote {out}")
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    from lmfs.scaling.accounting import (
        forward_flops,
        memory_estimate,
        param_count,
        six_nd_comparison,
        training_step_flops,
    )

    shape = model_from_flags(args)
    p = param_count(shape)
    print(
        f"parameters: total {p.total:,}  non-embedding {p.non_embedding:,}  12·L·d² {p.rule_12ld2:,} "
        f"({100 * p.rule_error:+.1f}%)  embedding {p.embedding:,}  lm_head {p.lm_head:,}"
    )
    fwd = forward_flops(shape, args.batch_size)
    print(
        f"forward FLOPs of one batch ({args.batch_size}×{shape.context_length}): {fwd.total:.4g} "
        f"(matmuls {fwd.matmul:.4g}); training step {training_step_flops(shape, args.batch_size):.4g}"
    )
    for k, v in sorted(fwd.components.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<12} {v:>12.4g}  {100 * v / fwd.total:5.1f}%")
    tokens = args.tokens or 20 * p.total
    cmp = six_nd_comparison(shape, tokens)
    print(
        f"training on {tokens:.3g} tokens: exact {cmp['exact']:.4g} FLOPs; 6·N·D with N = total "
        f"{100 * cmp['six_nd_total_error']:+.1f}%, non-embedding {100 * cmp['six_nd_non_embedding_error']:+.1f}%, "
        f"non-embedding + lm_head {100 * cmp['six_nd_with_head_error']:+.1f}%, Kaplan (+12·L·T·d) "
        f"{100 * cmp['kaplan_error']:+.1f}%"
    )
    mem = memory_estimate(shape, args.batch_size)
    print("memory (fp32, AdamW): " + "  ".join(f"{k} {v / 2**20:,.1f} MiB" for k, v in mem.as_dict().items()))
    return 0
