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
    )
    print(f"grading {opts.adapter} on {opts.specs} (timeout {opts.timeout:g} s/test, memory cap "
          f"{opts.memory_mb or 'none'} MB)", flush=True)
    try:
        doc = grade(opts)
    except GradeError as exc:
        raise CLIError(str(exc)) from None
    path = write_grade(doc, opts.reports_dir)
    print(format_table(doc))
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
    import pandas as pd

    from lmfs.harness.history import UnknownMachine, history_table
    from lmfs.harness.regress import history_changes

    df = _frame(args)
    if df.empty:
        print("the bench store is empty: run `lmfs bench run` first")
        return 0
    if args.benchmark:
        df = df[df["benchmark"].str.contains(args.benchmark, regex=False)]
    try:
        table = history_table(df, args.machine)
    except UnknownMachine as exc:
        raise CLIError(str(exc)) from None
    with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 200,
                           "display.max_colwidth", 70):
        print("median time per round (ms) by commit (oldest -> newest):")
        print((table * 1e3).round(4).to_string())
        changes = history_changes(df if args.machine is None else df[df["machine_id"] == args.machine])
        if changes.empty:
            print("\nno change points")
        else:
            print("\nchange points (commit where the new level starts):")
            print(changes.drop(columns=["index"]).to_string(index=False))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
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
    shown = table.assign(median_a=table["median_a"] * 1e3, median_b=table["median_b"] * 1e3)
    shown = shown.rename(columns={"median_a": f"{ca} ms", "median_b": f"{cb} ms", "ratio": "ratio b/a"})
    with pd.option_context("display.width", 220, "display.max_colwidth", 60, "display.max_rows", 500):
        print(f"{machine}: {cb} vs {ca} (regression = ratio > {1 + args.threshold:.2f} and Mann-Whitney "
              f"p < {args.alpha})")
        print(shown.drop(columns=["group"]).to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    n_reg = int((table["verdict"] == "REGRESSION").sum())
    n_imp = int((table["verdict"] == "improvement").sum())
    print(f"{n_reg} regression(s), {n_imp} improvement(s), {len(table)} benchmark(s) compared")
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

    p = root.add_parser("grade", help="grade an adapter against the specs (each test in a child process that survives hangs, crashes and runaway memory)",
                        description="Run specs/ against an adapter in a sandboxed child pytest; write "
                        "reports/grade/<adapter-name>.json. Extra pytest args go after `--`.")
    p.add_argument("--adapter", default="lmfs.adapters", help="adapter .py file or module name (default lmfs.adapters)")
    p.add_argument("--specs", help="specs folder (default <repo>/specs)")
    p.add_argument("--units", nargs="+", metavar="UNIT", help="only these units (folders under specs/)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per test (default 300)")
    p.add_argument("--memory-mb", type=int, default=8192, help="memory cap of the test process, 0 = none (default 8192)")
    p.add_argument("-k", help="pytest -k expression")
    p.add_argument("-m", help="pytest -m marker expression")
    p.add_argument("--show-failures", type=int, default=10, help="failing tests to list (default 10)")
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

    p = bench.add_parser("history", help="median per benchmark over stored commits, with change points")
    p.add_argument("--machine", help="one machine_id (default: all, each on its own)")
    p.add_argument("--benchmark", help="only benchmarks whose name contains this")
    reports_opt(p)
    p.set_defaults(func=cmd_bench_history)

    p = root.add_parser("compare", help="compare two stored commits on one machine (ratio + Mann-Whitney U)")
    p.add_argument("a", help="baseline commit (hash prefix, optionally -dirty)")
    p.add_argument("b", help="candidate commit")
    p.add_argument("--machine", help="machine_id (needed when both commits exist on several machines)")
    p.add_argument("--threshold", type=float, default=0.10, help="ratio threshold (default 0.10 = 10%%)")
    p.add_argument("--alpha", type=float, default=0.01, help="rank-test significance (default 0.01)")
    p.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a regression is flagged")
    reports_opt(p)
    p.set_defaults(func=cmd_compare)

    p = root.add_parser("report", help="write the self-contained HTML report (reports/index.html)")
    p.add_argument("--out", help="output file (default <reports>/index.html)")
    reports_opt(p)
    p.set_defaults(func=cmd_report)
