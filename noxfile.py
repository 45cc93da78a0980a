"""The front door. `nox` runs the main job; `nox -s tests` runs the tests. `nox -l` lists everything."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["run"]

# CPU torch: the range in pyproject.toml is satisfied by the CPU build this machine's pip finds locally;
# naming it explicitly keeps a fresh venv from pulling a multi-GB CUDA build.
TORCH_CPU = os.environ.get("LMFS_TORCH_SPEC", "torch==2.13.0")


def _install(session: nox.Session, extras: str = "dev") -> None:
    if os.environ.get("LMFS_SKIP_TORCH_PIN") != "1":
        session.install(TORCH_CPU)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """lmfs's own tests + every spec against lmfs's adapter (CPU; GPU tests skip without CUDA)."""
    _install(session)
    args = session.posargs or ["-m", "not slow"]
    session.run("pytest", "tests", "specs", "-q", "-p", "no:cacheprovider", "--timeout=600", *args)


@nox.session
def grade(session: nox.Session) -> None:
    """Grade an adapter: `nox -s grade -- --adapter path/to/adapters.py` (default: lmfs.adapters)."""
    _install(session)
    session.run("lmfs", "grade", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the pytest-benchmark suites and save the results to reports/bench/<machine_id>/<commit>.json."""
    _install(session)
    session.run("lmfs", "bench", "run", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Build reports/index.html from the grade results, the bench store and the stored tables."""
    _install(session)
    session.run("lmfs", "report", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + format check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "lmfs", "specs", "benchmarks", "tests", "noxfile.py")


@nox.session
def run(session: nox.Session) -> None:
    """The main job on embedded defaults: grade lmfs, run the CPU benchmarks, fit the stored scaling
    tables, write reports/index.html."""
    _install(session)
    session.run("lmfs", "grade")
    session.run("lmfs", "bench", "run")
    session.run("lmfs", "report")
    session.log("open reports/index.html")
