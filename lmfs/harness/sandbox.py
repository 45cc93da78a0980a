"""The worker's sandbox: bubblewrap (``bwrap``) when it works here, process-level limits when it does not.

:func:`worker_command` is the command line that starts ``worker.py`` for one graded adapter:

* ``bwrap`` — new user, PID, network, IPC, UTS and cgroup namespaces (``--unshare-all``; the network namespace
  has only its own loopback), a fresh ``/proc`` and ``/dev``, a private ``/tmp`` (tmpfs capped at ``tmp_mb``),
  ``--die-with-parent``, ``--new-session``, no capabilities, an empty environment (``--clearenv`` and a few
  neutral variables), and a read-only view of only: the system's ``/usr`` (and the ``/bin``, ``/lib*`` links),
  the Python installation and environment in use, ``worker.py`` itself, the submission's folder, and the shared
  data catalogue the specs pass paths into; the grading scratch folder (pytest's ``tmp_path`` and the
  sockets) is the one writable place. The specs, their references, lmfs's source (unless lmfs's own adapter is
  graded), the home folder and the grader's environment are not there.
* fallback (no ``bwrap``, or one that cannot create namespaces here) — the same worker with an empty
  environment, its own session and the memory cap; files, network and processes that escape its session are
  *not* confined. :func:`probe` says why, the grader prints it loudly and the grade says ``"sandboxed": false``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

WORKER = Path(__file__).with_name("worker.py")
WORKER_IN_SANDBOX = "/lmfs-worker/worker.py"
NEUTRAL_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "USER": "student",
               "LOGNAME": "student", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
               "PYTHONHASHSEED": "0", "TMPDIR": "/tmp"}
# neutral settings the specs' libraries read, passed through when set (never the grader's other variables)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
               "OPENBLAS_L2_SIZE", "TRITON_INTERPRET", "CUDA_VISIBLE_DEVICES", "HF_HUB_OFFLINE",
               "TRANSFORMERS_OFFLINE")


@dataclass
class SandboxInfo:
    """What the grader decided: ``mode`` ``bwrap`` or ``none``, the tool's version, and why not when not."""

    mode: str
    version: str | None = None
    reason: str | None = None

    @property
    def sandboxed(self) -> bool:
        return self.mode == "bwrap"

    def as_dict(self) -> dict:
        return {"sandboxed": self.sandboxed, "mode": self.mode, "tool": self.version, "reason": self.reason}


@dataclass
class WorkerView:
    """What the worker sees: folders to show read-only, the writable scratch folder, sys.path additions."""

    scratch: Path
    readonly: list[Path] = field(default_factory=list)
    sys_path: list[str] = field(default_factory=list)
    tmp_mb: int = 512
    shared: Path | None = None  # the shared data catalogue (shown read-only, named by $LMFS_SHARED_DIR)


def worker_env(view: WorkerView | None = None) -> dict[str, str]:
    env = dict(NEUTRAL_ENV)
    for var in THREAD_VARS:
        if var in os.environ:
            env[var] = os.environ[var]
    if view is not None and view.shared is not None:
        env["LMFS_SHARED_DIR"] = str(view.shared)
    return env


def python_roots() -> list[Path]:
    """The Python installation and the environment in use (a venv's prefix and its base interpreter's)."""
    roots = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.exec_prefix).resolve()}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            roots.add(Path(p).resolve())
    exe = Path(sys.executable)
    roots.add(exe.parent.resolve())
    roots.add(exe.resolve().parent.parent)
    return sorted(_outermost(roots))


def _outermost(paths: set[Path]) -> set[Path]:
    out = set()
    for p in paths:
        if not any(q != p and q in p.parents for q in paths):
            out.add(p)
    return out


def _system_args() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        p = Path("/") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/alternatives", "/etc/localtime", "/etc/nsswitch.conf"):
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    return args


def bwrap_args(view: WorkerView) -> list[str]:
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            *_system_args(), "--proc", "/proc", "--dev", "/dev",
            "--size", str(int(view.tmp_mb) * 2**20), "--tmpfs", "/tmp"]
    shown: set[Path] = set()
    for root in [*python_roots(), *view.readonly]:
        root = Path(root).resolve()
        if root in shown or not root.exists() or str(root).startswith("/usr/"):
            continue
        shown.add(root)
        args += ["--ro-bind", str(root), str(root)]
    args += ["--ro-bind", str(WORKER), WORKER_IN_SANDBOX]
    args += ["--bind", str(view.scratch), str(view.scratch), "--chdir", "/tmp", "--clearenv"]
    for k, v in worker_env(view).items():
        args += ["--setenv", k, v]
    return args


def worker_command(view: WorkerView, info: SandboxInfo, *worker_args: str) -> list[str]:
    """The command line of ``worker.py worker_args...`` in the sandbox ``info`` chose (or the fallback)."""
    if info.sandboxed:
        return [*bwrap_args(view), sys.executable, "-I", WORKER_IN_SANDBOX, *worker_args]
    return [sys.executable, "-I", str(WORKER), *worker_args]


def fallback_env(view: WorkerView | None = None) -> dict[str, str]:
    return worker_env(view)


_PROBED: SandboxInfo | None = None


def probe(want: str = "auto") -> SandboxInfo:
    """Whether bwrap works on this machine (it may be missing, or user namespaces may be off): run the
    interpreter in a minimal sandbox once. ``want``: ``auto`` (bwrap when it works), ``bwrap`` (the same,
    and the grader refuses to run without it), ``none`` (the fallback, on purpose)."""
    global _PROBED
    if want == "none":
        return SandboxInfo("none", reason="sandbox turned off (--sandbox none)")
    if _PROBED is not None:
        return _PROBED
    exe = shutil.which("bwrap")
    if exe is None:
        _PROBED = SandboxInfo("none", reason="bwrap (bubblewrap) is not installed: apt-get install bubblewrap")
        return _PROBED
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        _PROBED = SandboxInfo("none", reason=f"bwrap does not run: {exc}")
        return _PROBED
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lmfs-probe-") as tmp:
        view = WorkerView(scratch=Path(tmp), tmp_mb=16)
        cmd = [*bwrap_args(view), sys.executable, "-I", "-c",
               "import os, socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(os.getpid())"]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _PROBED = SandboxInfo("none", version, reason=f"bwrap failed to start a sandbox: {exc}")
            return _PROBED
    if res.returncode != 0:
        detail = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]
        _PROBED = SandboxInfo("none", version, reason=f"bwrap cannot create a sandbox here ({detail}); user "
                              "namespaces may be restricted (kernel.unprivileged_userns_clone, AppArmor)")
        return _PROBED
    _PROBED = SandboxInfo("bwrap", version)
    return _PROBED


def submission_view(adapter: str, root: Path | None) -> tuple[list[Path], list[str]]:
    """The folders the worker needs to import ``adapter`` (read-only) and the sys.path entries: a file's
    folder (and, for the course layout ``<project>/tests/adapters.py``, the project folder above it); a module
    name's top-level package (lmfs's own package when it is lmfs's adapter)."""
    from lmfs.harness.adapter import looks_like_path

    if looks_like_path(adapter):
        path = Path(adapter).resolve()
        folder = path.parent
        project = folder.parent if folder.name == "tests" else folder
        return [project], [str(folder), str(project)]
    import importlib.util

    top = adapter.split(".")[0]
    spec = importlib.util.find_spec(top)  # the top-level name only: locating it runs none of its code
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return [], []
    origin = Path(spec.origin).resolve()
    pkg = origin.parent if spec.submodule_search_locations else origin
    base = pkg.parent
    if any(str(pkg).startswith(str(r)) for r in python_roots()):
        return [], []  # installed in the environment: already visible
    return [pkg], [str(base)]
