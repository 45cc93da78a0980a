"""The hostile adapters of ``fixtures/hostile/`` and a driver that grades one of them on the optim unit and
records what it got away with: its score, the denominator, leaked canary / environment text, connections to a
loopback listener, processes left running, files left in /tmp, and the grader's peak memory.

Used by ``test_hostile*.py`` and, as a script, to build the table in ``reports/data/harness/hostile.json``
against any lmfs tree (``python -m tests.harness.hostile_cases --tree DIR --label before``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

HOSTILE = Path(__file__).parent / "fixtures" / "hostile"
ROOT = Path(__file__).resolve().parents[2]

# attack name -> what it does (file fixtures/hostile/<name>.py)
ATTACKS = {
    "patch_classifier": "patch the plugin's outcome classifier at import",
    "register_plugin": "register a pytest plugin whose makereport wrapper passes everything",
    "patch_makereport": "patch pytest's report factory (pytest_runtest_makereport's output)",
    "forge_log": "append forged pass records (and a 5000-point test) to the grade log",
    "rewrite_specs": "rewrite the spec files on disk at import (test bodies become pass)",
    "rewrite_plugin": "rewrite the grading plugin on disk, then crash so a fresh process loads it",
    "skip_all": "skip every test",
    "exit_early": "end the pytest session cleanly at import; exit 0 from calls",
    "reexport_lmfs": "re-export lmfs's own implementation",
    "call_reference": "call the spec's reference module",
    "do_nothing": "baseline: the do-nothing functions of patch_checks, without the patching",
    "patch_checks": "patch torch.testing.assert_close / torch.allclose / pytest.approx; do nothing",
    "magic_values": "return a float subclass whose __eq__ is always True",
    "read_canary": "read a canary file outside its folder, leak it in messages and output",
    "read_env": "read the grader's environment, leak it in messages",
    "connect": "connect to a loopback listener on the grader's machine",
    "fork_leftover": "leave forked processes running (new sessions, double fork)",
    "fill_tmp": "fill /tmp and leave the file there",
    "stdout_spam": "spam stdout and stderr",
    "combined": "patch, register a plugin, forge the log; read, call home, fork, fill /tmp and skip in calls",
}

SECRET_ENV = "LMFS_GRADER_SECRET"


@dataclass
class Outcome:
    attack: str
    earned: float | None = None
    possible: float | None = None
    tests: int | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    sandboxed: bool | None = None
    error: str | None = None  # grading itself failed (CLI error)
    canary_leaked: bool = False
    env_leaked: bool = False
    connections: int = 0
    leftover_processes: int = 0
    tmp_left_mb: float = 0.0
    specs_changed: bool = False
    plugin_changed: bool = False
    peak_rss_mb: float = 0.0
    wall_s: float = 0.0

    def score(self) -> str:
        if self.earned is None:
            return f"error: {(self.error or '')[:60]}"
        return f"{self.earned:g}/{self.possible:g}"


class _Listener:
    """A loopback TCP listener that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def _tagged_processes(tag: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if tag.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.py"))}


def _neutered(source: bytes) -> bool:
    """A spec file as ``rewrite_specs`` leaves it: every test function's body is ``pass``."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    tests = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    return bool(tests) and all(len(n.body) == 1 and isinstance(n.body[0], ast.Pass) for n in tests)


def copy_specs(dest: Path, tree: Path, unit: str = "optim") -> Path:
    """A private copy of ``tree/specs`` with only ``unit`` (an attack may rewrite it)."""
    specs = dest / "specs"
    specs.mkdir(parents=True)
    for name in ("__init__.py", "conftest.py"):
        if (tree / "specs" / name).exists():
            shutil.copy(tree / "specs" / name, specs / name)
    shutil.copytree(tree / "specs" / unit, specs / unit, ignore=shutil.ignore_patterns("__pycache__"))
    return specs


def grade_attack(attack: str, work: Path, tree: Path = ROOT, unit: str = "optim", timeout: float = 60.0,
                 memory_mb: int = 4096, conf: dict | None = None, extra_args: list[str] | None = None) -> Outcome:
    """Grade ``fixtures/hostile/<attack>.py`` (copied to ``work/student/adapters.py``) with ``lmfs grade`` from
    ``tree`` on a private copy of its specs; the grader runs with a secret in its environment, a canary file
    sits outside the adapter's folder, and a listener waits on loopback."""
    work.mkdir(parents=True, exist_ok=True)
    student = work / "student"
    student.mkdir()
    shutil.copy(HOSTILE / f"{attack}.py", student / "adapters.py")
    for helper in ("_hostile.py", "forge_log.py", "patch_classifier.py", "register_plugin.py"):
        shutil.copy(HOSTILE / helper, student / helper)
    secret = uuid.uuid4().hex
    canary_text = "CANARY-" + uuid.uuid4().hex
    canary = work / "canary.txt"
    canary.write_text(canary_text)
    tag = "lmfs-hostile-" + uuid.uuid4().hex[:12]
    listener = _Listener()
    settings = {"canaries": [str(canary)], "port": listener.port, "tag": tag, "fill_mb": 256, "spam_mb": 256,
                **(conf or {})}
    (student / "hostile.json").write_text(json.dumps(settings))
    specs = copy_specs(work / "specs-copy", tree, unit)
    specs_before = _snapshot(specs)
    tree_specs_before = _snapshot(tree / "specs")
    plugin = tree / "lmfs" / "harness" / "pytest_plugin.py"
    plugin_before = plugin.read_bytes()
    reports = work / "reports"
    env = dict(os.environ, PYTHONPATH=str(tree), **{SECRET_ENV: secret})
    env.pop("CI", None)
    cmd = [sys.executable, "-m", "lmfs", "grade", "--adapter", str(student / "adapters.py"), "--specs", str(specs),
           "--units", unit, "--timeout", str(timeout), "--memory-mb", str(memory_mb), "--reports-dir", str(reports),
           *(extra_args or [])]
    out = Outcome(attack=attack)
    t0 = time.monotonic()
    # the grade runs under a small wrapper that reports the largest RSS among its own descendants
    wrapper = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
               "print('LMFS-MAXRSS-KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True); "
               "sys.exit(rc)")
    proc = subprocess.Popen([sys.executable, "-c", wrapper, *cmd], cwd=tree, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    stdout, _ = proc.communicate(timeout=1800)
    out.wall_s = round(time.monotonic() - t0, 1)
    for line in stdout.decode("utf-8", "replace").splitlines()[-5:]:
        if line.startswith("LMFS-MAXRSS-KB "):
            out.peak_rss_mb = round(int(line.split()[1]) / 1024, 1)
    time.sleep(0.5)
    listener.close()
    out.connections = listener.accepted
    leftovers = _tagged_processes(tag)
    out.leftover_processes = len(leftovers)
    for pid in leftovers:  # clean up what the attack left (only its own tagged processes)
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    for p in Path("/tmp").glob(tag + "*"):
        out.tmp_left_mb += round(p.stat().st_size / 2**20, 1)
        p.unlink()
    tree_specs_after = _snapshot(tree / "specs")
    out.specs_changed = _snapshot(specs) != specs_before or tree_specs_after != tree_specs_before
    for rel, data in tree_specs_before.items():  # put the tree's specs back for the next attack
        after = tree_specs_after.get(rel)
        if after is not None and after != data and _neutered(after):  # only what an attack wrote: the tree may
            (tree / "specs" / rel).write_bytes(data)  # be a checkout someone is editing meanwhile
    out.plugin_changed = plugin.read_bytes() != plugin_before
    if out.plugin_changed:  # put the grader back for the next attack
        plugin.write_bytes(plugin_before)
    grades = list((reports / "grade").glob("*.json")) if (reports / "grade").exists() else []
    text = stdout.decode("utf-8", "replace")
    blob = text
    if grades:
        doc = json.loads(grades[0].read_text())
        blob += grades[0].read_text()
        out.earned, out.possible = doc["total"]["earned"], doc["total"]["possible"]
        out.tests = doc["total"]["tests"]
        for t in doc["tests"]:
            out.outcomes[t["outcome"]] = out.outcomes.get(t["outcome"], 0) + 1
        out.sandboxed = doc.get("sandbox", {}).get("sandboxed") if isinstance(doc.get("sandbox"), dict) else None
    else:
        out.error = text.strip().splitlines()[-1] if text.strip() else f"exit {proc.returncode}"
    out.canary_leaked = canary_text in blob
    out.env_leaked = secret in blob
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tree", type=Path, default=ROOT, help="the lmfs checkout whose grader to attack")
    ap.add_argument("--label", required=True, help="column name (before / after)")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "data" / "harness" / "hostile.json")
    ap.add_argument("--attacks", nargs="*", default=list(ATTACKS))
    args = ap.parse_args(argv)
    import tempfile

    results = {}
    for name in args.attacks:
        with tempfile.TemporaryDirectory(prefix="lmfs-hostile-") as tmp:
            res = grade_attack(name, Path(tmp), tree=args.tree.resolve())
        results[name] = asdict(res)
        print(f"{name:18s} {res.score():>14s}  leak canary={res.canary_leaked} env={res.env_leaked} "
              f"conn={res.connections} left={res.leftover_processes} tmp={res.tmp_left_mb}MB "
              f"specs_changed={res.specs_changed} plugin_changed={res.plugin_changed} rss={res.peak_rss_mb}MB "
              f"wall={res.wall_s}s", flush=True)
    doc = json.loads(args.out.read_text()) if args.out.exists() else {}
    doc[args.label] = {"loadavg": Path("/proc/loadavg").read_text().split()[:3], "tree": str(args.tree),
                       "results": results}
    from lmfs.atomic import write_json_atomic

    write_json_atomic(args.out, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
