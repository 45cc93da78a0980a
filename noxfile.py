"""The front door. `nox` runs the main job; `nox -s tests` runs the tests. `nox -l` lists everything.

Sessions reuse their virtualenvs (`nox -R` skips even the install step). Arguments after `--` go to the
underlying command, e.g. `nox -s grade -- --adapter path/to/adapters.py --units nn`.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["run"]

# CPU torch: the range in pyproject.toml is satisfied by the CPU build this machine's pip finds locally;
# naming it explicitly keeps a fresh venv from pulling a multi-GB CUDA build.
TORCH_CPU = os.environ.get("LMFS_TORCH_SPEC", "torch==2.13.0")
CPU_BENCH_MARKERS = "not slow and not gpu"


def _install(session: nox.Session, extras: str = "dev") -> None:
    if os.environ.get("LMFS_SKIP_TORCH_PIN") != "1":
        session.install(TORCH_CPU)
    session.install("-e", f".[{extras}]")


def _shared_scaling_tables() -> bool:
    """Whether the stored scaling tables are reachable (the same places lmfs.paths.shared_dir looks)."""
    here = Path(__file__).resolve().parent
    roots = [Path(os.environ["LMFS_SHARED_DIR"])] if os.environ.get("LMFS_SHARED_DIR") else []
    roots += [here.parent / "shared", Path.cwd().parent / "shared"]
    return any((r / "data" / "scaling").is_dir() for r in roots)


@nox.session
def tests(session: nox.Session) -> None:
    """lmfs's own tests + every spec against lmfs's adapter (CPU; GPU tests skip without CUDA).

    Any pytest failure, error, or "no tests collected" (exit 5) fails the session."""
    _install(session)
    args = session.posargs or ["-m", "not slow"]
    session.run("pytest", "tests", "specs", "-q", "-p", "no:cacheprovider", "--timeout=600", *args)


@nox.session
def grade(session: nox.Session) -> None:
    """Grade an adapter: `nox -s grade -- --adapter path/to/adapters.py` (default: lmfs.adapters).
    Writes reports/grade/<adapter-name>.json and prints a per-unit table."""
    _install(session)
    session.run("lmfs", "grade", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the pytest-benchmark suites (default marker expression "not slow and not gpu") and store the
    result as reports/bench/<machine_id>/<commit>[-dirty].json. `nox -s bench -- -m "not gpu"` adds slow ones."""
    _install(session)
    session.run("lmfs", "bench", "run", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Build reports/index.html from the grade results, the bench store and the units' stored tables."""
    _install(session)
    session.run("lmfs", "report", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check over the package, specs, benchmarks, tests and this file."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "lmfs", "specs", "benchmarks", "tests", "noxfile.py")


@nox.session
def run(session: nox.Session) -> None:
    """The main job on embedded defaults: grade lmfs, run the CPU benchmarks, fit the stored scaling tables
    (when the shared data is there; seeded, so an unchanged table rewrites the same JSON), write
    reports/index.html.

    A failing spec or benchmark still gets a report: grading exits 0 when it completes (the scores say
    what failed) and a bench run with failures (pytest exit 1) still stores what ran."""
    _install(session)
    session.run("lmfs", "grade")
    session.run("lmfs", "bench", "run", "-m", CPU_BENCH_MARKERS, success_codes=[0, 1])
    if _shared_scaling_tables():
        for table in ("epoch", "isoflops"):
            out = f"reports/data/scaling/fit_{table}.json"
            session.run("lmfs", "scaling", "fit", "--table", table, "--boot", "1000", "--out", out)
    else:
        session.log("no shared scaling tables (../shared/data/scaling or $LMFS_SHARED_DIR): fits skipped")
    session.run("lmfs", "report")
    session.log("open reports/index.html")
