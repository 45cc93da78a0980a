"""``lmfs grade``, ``lmfs bench run|store|history``, ``lmfs compare``, ``lmfs report``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmfs.cli import CLIError

DEFAULT_BENCH_MARKERS = "not slow and not gpu"


def _require(*modules: str) -> None:
    """Stop with what to install when a package of the ``harness`` extra is missing (``pip install lmfs`` gives
    the library alone)."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise CLIError(f"this command needs {', '.join(missing)}: pip install 'lmfs[harness]'")


def _reports_dir(args: argparse.Namespace) -> Path:
    from lmfs.paths import reports_dir

    return Path(args.reports_dir) if getattr(args, "reports_dir", None) else reports_dir()


def _rest(args: argparse.Namespace) -> list[str]:
    rest = list(getattr(args, "pytest_args", None) or [])
    return rest[1:] if rest[:1] == ["--"] else rest


# -------------------------------------------------------------------------------------------------- grade


def cmd_grade(args: argparse.Namespace) -> int:
    _require("pytest", "pytest_timeout", "hypothesis", "psutil")
    from lmfs.harness.grade import GradeError, GradeOptions, format_table, grade, write_grade
    from lmfs.paths import project_root

    root = project_root()
    pytest_args = _rest(args)
    if args.k:
        pytest_args += ["-k", args.k]
    if args.m:
        pytest_args += ["-m", args.m]
    opts = GradeOptions(
        adapter=args.adapter,
        specs=Path(args.specs) if args.specs else root / "specs",
        units=args.units,
        timeout=args.timeout,
        memory_mb=args.memory_mb or None,
        pytest_args=pytest_args,
        reports_dir=_reports_dir(args),
        cwd=root if (root / "pyproject.toml").exists() else None,
        echo=lambda line: print(line, flush=True),
        sandbox=args.sandbox,
        tmp_mb=args.tmp_mb,
        name=args.name,
    )
    print(f"grading {opts.adapter} on {opts.specs} (timeout {opts.timeout:g} s/test, memory cap "
          f"{opts.memory_mb or 'none'} MB)", flush=True)
    try:
        doc = grade(opts)
    except GradeError as exc:
        raise CLIError(str(exc)) from None
    path = write_grade(doc, opts.reports_dir)
    print(format_table(doc))
    sb = doc.get("sandbox") or {}
    print(f"sandbox: {sb.get('tool')} (bwrap)" if sb.get("sandboxed") else
          f"sandbox: NONE - this grade is NOT SANDBOXED ({sb.get('reason')})")
    failing = [t for t in doc["tests"] if t["outcome"] not in ("passed", "skipped")]
    failing.sort(key=lambda t: t["outcome"] == "missing")  # real failures first, "not written" last
    counts: dict[str, int] = {}
    for t in doc["tests"]:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    for t in failing[: args.show_failures]:
        first_line = ((t["message"] or "").strip().splitlines() or [""])[0]
        print(f"  {t['outcome']:>15}  {t['nodeid']}  {first_line[:160]}")
    if len(failing) > args.show_failures:
        print(f"  ... {len(failing) - args.show_failures} more in {path}")
    for ce in doc["collect_errors"]:
        print(f"  collection error in {ce['nodeid']}: {ce['message'].strip().splitlines()[-1:]}")
    print(f"wrote {path} ({doc['wall_s']} s, {doc['restarts']} restart(s))")
    if doc["error"]:
        raise CLIError(f"grading incomplete: {doc['error']}", code=3)
    return 0


# -------------------------------------------------------------------------------------------------- bench


def cmd_bench_run(args: argparse.Namespace) -> int:
    _require("pytest", "pytest_benchmark")
    import json
    import shlex
    import subprocess
    import tempfile

    from lmfs.harness.machine import format_load, git_commit, load_record, load_snapshot, run_load
    from lmfs.harness.pytest_plugin import PYTEST_ARGS
    from lmfs.harness.store import StoreError, commit_stem, save_run
    from lmfs.paths import project_root

    root = project_root()
    suites = args.suite or [str(root / "benchmarks")]
    head, dirty = git_commit(root)  # the code that runs is the code checked out now, not at the end of the run
    commit = args.commit or (commit_stem(head, dirty) if head else None)
    with tempfile.TemporaryDirectory(prefix="lmfs-bench-") as tmp:
        out = Path(tmp) / "bench.json"
        # the plugin by name: a suite given with --suite may lie outside the conftests that load it
        cmd = [sys.executable, "-m", "pytest", *PYTEST_ARGS, *suites, "-m", args.m, "--benchmark-only",
               f"--benchmark-json={out}", "-p", "no:cacheprovider", "-q", *_rest(args)]
        print("running:", shlex.join(cmd), flush=True)
        load_start = load_snapshot()
        rc = subprocess.run(cmd, cwd=root if (root / "pyproject.toml").exists() else None).returncode
        load = load_record(load_start, load_snapshot())
        if not out.exists():
            raise CLIError(f"no benchmark results (pytest exit {rc}); nothing stored", code=rc or 5)
        if args.no_store:
            print(out.read_text())
            return rc
        doc = json.loads(out.read_text())
        doc["load"] = load  # the box's load while the suites ran: the report marks runs taken under load
        ungrouped = [b.get("fullname", b.get("name")) for b in doc.get("benchmarks", []) if not b.get("group")]
        if ungrouped:  # no peer to compare with in the report (set benchmark.group before the timed call)
            print(f"lmfs: warning: {len(ungrouped)} benchmark(s) without a group, e.g. {ungrouped[0]}",
                  file=sys.stderr)
        if isinstance(doc.get("machine_info"), dict) and "machine_id" not in doc["machine_info"]:
            from lmfs.harness.machine import machine_info

            doc["machine_info"].update(machine_info())  # a suite outside benchmarks/ (no conftest): same box
        try:
            path = save_run(doc, _reports_dir(args), args.machine, commit)
        except StoreError as exc:
            raise CLIError(str(exc)) from None
    print(f"stored {path}; {format_load(run_load(doc))}"
          + (f" (pytest exit {rc}: some benchmarks failed)" if rc else ""))
    return rc


def cmd_bench_store(args: argparse.Namespace) -> int:
    import json

    from lmfs.harness.machine import git_commit
    from lmfs.harness.store import StoreError, _commit_from_doc, commit_stem, save_run

    path = Path(args.file)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CLIError(f"{path}: not valid JSON ({exc})") from None
    commit = args.commit
    if commit is None and isinstance(doc, dict) and _commit_from_doc(doc) is None:
        head, dirty = git_commit()
        if head is None:
            raise CLIError(f"{path} has no commit_info and this is not a git checkout; pass --commit HASH")
        commit = commit_stem(head, dirty)
        print(f"warning: {path} has no commit info; storing it under the local HEAD {commit} (use --commit)",
              file=sys.stderr)
    try:
        out = save_run(doc, _reports_dir(args), args.machine, commit)
    except StoreError as exc:
        raise CLIError(f"{path}: {exc}") from None
    print(f"stored {out}")
    return 0


def _frame(args: argparse.Namespace):
    from lmfs.harness.history import runs_frame
    from lmfs.harness.store import load_store

    runs, problems = load_store(_reports_dir(args), warn=False)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    return runs_frame(runs)


def cmd_bench_history(args: argparse.Namespace) -> int:
    from lmfs.harness.history import UnknownMachine, check_machine, short_label, terminal_history
    from lmfs.harness.regress import history_changes

    df = _frame(args)
    if df.empty:
        print("the bench store is empty: run `lmfs bench run` first")
        return 0
    if args.benchmark:
        df = df[df["benchmark"].str.contains(args.benchmark, regex=False)
                | df["group"].astype(str).str.contains(args.benchmark, regex=False)]
    if args.last < 1:
        raise CLIError(f"--last must be at least 1 (got {args.last})")
    try:
        if args.machine is not None:
            check_machine(df, args.machine)
    except UnknownMachine as exc:
        raise CLIError(str(exc)) from None
    machines = [args.machine] if args.machine else sorted(df["machine_id"].unique())
    for i, machine in enumerate(machines):
        mdf = df[df["machine_id"] == machine]
        print(("\n" if i else "") + f"== {machine}: {mdf['commit'].nunique()} stored commit(s)")
        print(terminal_history(mdf, machine, last=args.last, absolute=args.absolute))
        changes = history_changes(mdf)
        if changes.empty:
            print("no change points")
            continue
        labels = {r.benchmark: short_label(r.group, r.impl, 38) for r in mdf.itertuples()}
        print("change points (commit where the new level starts; × new level / old level, of lmfs relative\n"
              "to its peer unless marked 'absolute'):")
        for r in changes.tail(args.changes).itertuples():
            basis = "" if r.basis.startswith("peer") else "  absolute"
            p = "" if r.p_value is None or r.p_value != r.p_value else f"  p={r.p_value:.2g}"
            print(f"  {labels.get(r.benchmark, r.benchmark):<38} {r.commit[:12]:<13} ×{r.ratio:.2f}  "
                  f"{r.kind}{p}{basis}")
        if len(changes) > args.changes:
            print(f"  ({len(changes) - args.changes} earlier change point(s) not shown: --changes N)")
    return 0


def _run_line(label: str, commit: str, mdf) -> str:
    """``A <commit> <date>  <load>`` for the compare header."""
    rows = mdf[mdf["commit"] == commit]
    when = str(rows["datetime"].iloc[0])[:16].replace("T", " ") if not rows.empty else "?"
    peak = rows["load_peak"].iloc[0] if not rows.empty else None
    if peak is None or peak != peak:
        text = "load not recorded"
    else:
        text = f"peak 1-min load {peak:.2f}" + (" UNDER LOAD" if bool(rows["loaded"].iloc[0]) else "")
    return f"  {label} {commit:<20} {when}  {text}"


def cmd_compare(args: argparse.Namespace) -> int:
    import math

    import pandas as pd

    from lmfs.harness.history import UnknownMachine
    from lmfs.harness.regress import compare_commits, resolve_commit

    df = _frame(args)
    if df.empty:
        raise CLIError("the bench store is empty: run `lmfs bench run` on two commits first")
    machine = args.machine
    if machine is None:
        candidates = []
        for mid, mdf in df.groupby("machine_id"):
            try:
                resolve_commit(mdf, args.a), resolve_commit(mdf, args.b)
                candidates.append(mid)
            except KeyError:
                pass
        if len(candidates) != 1:
            found = ", ".join(candidates) if candidates else "none"
            raise CLIError(f"pass --machine ID: machines holding both {args.a} and {args.b}: {found}; "
                           f"known: {', '.join(sorted(df['machine_id'].unique()))}")
        machine = candidates[0]
    try:
        ca, cb, table = compare_commits(df, args.a, args.b, machine, args.threshold, args.alpha)
    except UnknownMachine as exc:
        raise CLIError(str(exc)) from None
    except KeyError as exc:
        raise CLIError(str(exc.args[0])) from None
    if table.empty:
        print(f"{ca} and {cb} on {machine} share no benchmark")
        return 0
    mdf = df[df["machine_id"] == machine]
    shown = table[table["verdict"] != "peer"] if not args.peers else table
    shown = shown.assign(
        benchmark=shown["benchmark"].str.replace("benchmarks/", "", regex=False),
        median_a=shown["median_a"] * 1e3, median_b=shown["median_b"] * 1e3,
        basis=shown["basis"].str.replace("absolute (no peer)", "absolute", regex=False),
    ).rename(columns={"median_a": "A ms", "median_b": "B ms", "ratio": "B/A", "peer_ratio": "peer B/A",
                      "rel_ratio": "rel B/A", "p_value": "p"})
    with pd.option_context("display.width", 250, "display.max_colwidth", 58, "display.max_rows", 500):
        print(f"{machine}: B = {cb} vs A = {ca}. lmfs is judged relative to its same-run peer: rel B/A = "
              f"(lmfs/peer in B) / (lmfs/peer in A); REGRESSION = rel B/A > {1 + args.threshold:.2f} and "
              f"Mann-Whitney p < {args.alpha} on the per-round ratios. 'absolute': no peer, judged on time.")
        print(_run_line("A", ca, mdf))
        print(_run_line("B", cb, mdf))
        print(shown.drop(columns=["group"]).to_string(index=False, float_format=lambda x: f"{x:.3g}",
                                                      na_rep=""))
    spread = table.attrs.get("spread")
    if spread is not None:
        from lmfs.harness.regress import SPREAD_Z

        print(f"spread of the relative ratios across these benchmarks: ×{math.exp(spread):.3f} (robust sigma of "
              f"their logs); a flag must also lie beyond ×{math.exp(SPREAD_Z * spread):.2f} ('within spread')")
    n_reg = int((table["verdict"] == "REGRESSION").sum())
    n_imp = int((table["verdict"] == "improvement").sum())
    n_inc = int((table["verdict"] == "inconclusive").sum())
    n_peer = int((table["verdict"] == "peer").sum())
    hidden = f" ({n_peer} peer rows hidden: --peers)" if n_peer and not args.peers else ""
    print(f"{n_reg} regression(s), {n_imp} improvement(s), {n_inc} inconclusive, "
          f"{len(table) - n_peer} lmfs benchmark(s) compared{hidden}")
    return 1 if (args.fail_on_regression and n_reg) else 0


# -------------------------------------------------------------------------------------------------- report


def cmd_report(args: argparse.Namespace) -> int:
    _require("jinja2", "matplotlib")
    from lmfs.harness.render import ReportError, build_report

    try:
        out = build_report(_reports_dir(args), Path(args.out) if args.out else None)
    except ReportError as exc:
        raise CLIError(str(exc)) from None
    print(f"wrote {out}")
    return 0


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    root, bench = groups["root"], groups["bench"]

    def reports_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--reports-dir", help="reports folder (default: $LMFS_REPORTS_DIR or <repo>/reports)")

    p = root.add_parser("grade", help="grade an adapter against the specs (the specs decide in a trusted process; the adapter runs in a sandbox)",
                        description="Run specs/ in a trusted child pytest against an adapter hosted in a bubblewrap "
                        "sandbox; write reports/grade/<name>.json (a run on some --units merges into it). "
                        "Extra pytest args go after `--`.")
    p.add_argument("--adapter", default="lmfs.adapters", help="adapter .py file or module name (default lmfs.adapters)")
    p.add_argument("--specs", help="specs folder (default <repo>/specs)")
    p.add_argument("--units", nargs="+", metavar="UNIT", help="only these units (folders under specs/)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per test (default 300)")
    p.add_argument("--memory-mb", type=int, default=8192, help="memory cap of the test process, 0 = none (default 8192)")
    p.add_argument("-k", help="pytest -k expression")
    p.add_argument("-m", help="pytest -m marker expression")
    p.add_argument("--show-failures", type=int, default=10, help="failing tests to list (default 10)")
    p.add_argument("--sandbox", choices=("auto", "bwrap", "none"), default="auto",
                   help="the adapter's sandbox: auto (bwrap when it works here, else a loud warning and "
                   "process-level limits), bwrap (refuse to grade without it), none (default auto)")
    p.add_argument("--tmp-mb", type=int, default=512, help="size of the adapter's private /tmp in MiB (default 512)")
    p.add_argument("--name", help="name of the grade file reports/grade/<name>.json (default: the adapter's "
                   "file name and a hash of its path, or its module name)")
    reports_opt(p)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_grade)

    p = bench.add_parser("run", help="run the pytest-benchmark suites and store the result",
                         description="Run benchmarks/ and store reports/bench/<machine_id>/<commit>[-dirty].json. "
                         "Extra pytest args go after `--`.")
    p.add_argument("-m", default=DEFAULT_BENCH_MARKERS, help=f"marker expression (default {DEFAULT_BENCH_MARKERS!r})")
    p.add_argument("--suite", action="append", help="benchmark file or folder (repeatable; default benchmarks/)")
    p.add_argument("--machine", help="override the machine_id")
    p.add_argument("--commit", help="override the commit (HASH or HASH-dirty)")
    p.add_argument("--no-store", action="store_true", help="print the JSON instead of storing it")
    reports_opt(p)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_bench_run)

    p = bench.add_parser("store", help="import a pytest-benchmark JSON (e.g. from the GPU machine) into the store")
    p.add_argument("file")
    p.add_argument("--machine", help="machine_id (default: the file's machine_info.machine_id)")
    p.add_argument("--commit", help="commit HASH[-dirty] (default: the file's commit_info)")
    reports_opt(p)
    p.set_defaults(func=cmd_bench_store)

    p = bench.add_parser("history", help="lmfs vs its peer over the latest stored commits, with change points",
                         description="Per machine, one row per lmfs benchmark over the latest --last commits: "
                         "lmfs's median time relative to its same-run peer (absolute time where it has none), "
                         "when each commit ran and under what load, and the change points.")
    p.add_argument("--machine", help="one machine_id (default: all, each on its own)")
    p.add_argument("--benchmark", help="only benchmarks whose name or group contains this")
    p.add_argument("--last", type=int, default=5, help="commits shown, newest last (default 5)")
    p.add_argument("--absolute", action="store_true", help="median times instead of ratios to the peer")
    p.add_argument("--changes", type=int, default=15, help="latest change points listed (default 15)")
    reports_opt(p)
    p.set_defaults(func=cmd_bench_history)

    p = root.add_parser("compare", help="compare two stored commits on one machine, lmfs relative to its same-run peer",
                        description="lmfs's time relative to its peer in the same run, B vs A: flagged when that "
                        "ratio got worse by more than --threshold and Mann-Whitney U on the per-round ratios gives "
                        "p < --alpha. Benchmarks without a peer are judged on absolute time and marked so.")
    p.add_argument("a", help="baseline commit (hash prefix, optionally -dirty)")
    p.add_argument("b", help="candidate commit")
    p.add_argument("--machine", help="machine_id (needed when both commits exist on several machines)")
    p.add_argument("--threshold", type=float, default=0.10, help="ratio threshold (default 0.10 = 10%%)")
    p.add_argument("--alpha", type=float, default=0.01, help="rank-test significance (default 0.01)")
    p.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a regression is flagged")
    p.add_argument("--peers", action="store_true", help="also list the peers' own rows")
    reports_opt(p)
    p.set_defaults(func=cmd_compare)

    p = root.add_parser("report", help="write the self-contained HTML report (reports/index.html)")
    p.add_argument("--out", help="output file (default <reports>/index.html)")
    reports_opt(p)
    p.set_defaults(func=cmd_report)
