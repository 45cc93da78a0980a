"""The trusted side of a graded run: the ``adapter`` the specs see when ``lmfs grade`` runs them.

The spec process never imports the submission. :class:`WorkerSession` starts ``worker.py`` once (in the sandbox
:mod:`lmfs.harness.sandbox` chose), and asks it for a *host* — a process forked from it that imports the adapter —
per spec module; :class:`RemoteAdapter` turns ``adapter.run_linear(...)`` into a request to that host (see
:mod:`lmfs.harness.worker` for what crosses and how). After every test the session has the worker kill every
process in the sandbox but the current host; when a module's last test ends, the host goes too.

A rank of a distributed spec (``run_ranks``) unpickles the adapter as a :class:`RemoteAdapter` of its own: it
asks the same worker for a host that joins a gloo group with the other ranks' hosts inside the sandbox, so the
submission's collectives run there while the spec's checks stay in the rank.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from lmfs.harness import worker as _w
from lmfs.harness.adapter import AdapterLoadError, AdapterMissing, AdapterNotImplemented, _unavailable
from lmfs.harness.sandbox import SandboxInfo, WorkerView, fallback_env, worker_command

OUTPUT_HEAD = 32_000
OUTPUT_TAIL = 32_000


class CappedOutput:
    """A process's output: the first and last ``OUTPUT_*`` bytes kept, the rest counted and dropped."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.lock = threading.Lock()

    def feed(self, data: bytes) -> None:
        with self.lock:
            self.total += len(data)
            room = OUTPUT_HEAD - len(self.head)
            if room > 0:
                self.head += data[:room]
                data = data[room:]
            if data:
                self.tail += data
                if len(self.tail) > OUTPUT_TAIL:
                    del self.tail[: len(self.tail) - OUTPUT_TAIL]

    def mark(self) -> int:
        return self.total

    def text(self, since: int = 0, limit: int = 4000) -> str:
        with self.lock:
            data = bytes(self.tail) if self.total > OUTPUT_HEAD else bytes(self.head)
        return data[-limit:].decode("utf-8", "replace")


class WorkerSession:
    """One sandboxed worker for one spec process; hosts on demand."""

    def __init__(self, adapter: str, *, scratch: Path, sandbox: SandboxInfo, readonly: list[Path],
                 sys_path: list[str], memory_mb: int | None, tmp_mb: int = 512, threads: int | None = None,
                 channel: Path | None = None) -> None:
        self.adapter = adapter
        self.scratch = Path(scratch)
        self.sandbox = sandbox
        self.readonly = list(readonly)
        self.sys_path = list(sys_path)
        self.memory_mb = memory_mb
        self.tmp_mb = tmp_mb
        self.threads = threads
        self.channel = channel
        self.proc: subprocess.Popen | None = None
        self.output = CappedOutput()
        self.peer: _w.Peer | None = None
        self.host_pid: int | None = None
        self.host_key: Any = None
        self._has: dict[str, tuple[bool, bool]] = {}
        self.owner = channel is None  # a rank's session uses the worker its parent started

    # ------------------------------------------------------------------ the worker
    def _start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.channel = Path(self.scratch) / f"chan-{uuid.uuid4().hex[:8]}"
        self.channel.mkdir(parents=True)
        shared = os.environ.get("LMFS_WORKER_SHARED")
        view = WorkerView(scratch=self.scratch, readonly=self.readonly, sys_path=self.sys_path, tmp_mb=self.tmp_mb,
                          shared=Path(shared) if shared else None)
        cmd = worker_command(view, self.sandbox, "serve", str(self.channel),
                             "sandboxed" if self.sandbox.sandboxed else "fallback")
        env = None if self.sandbox.sandboxed else fallback_env(view)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                     cwd=str(self.scratch))
        ready = threading.Event()

        def drain(stream=self.proc.stdout) -> None:
            while True:
                chunk = stream.read1(1 << 16) if hasattr(stream, "read1") else stream.read(1 << 16)
                if not chunk:
                    ready.set()
                    return
                if not ready.is_set() and b"lmfs-worker-ready" in chunk:
                    ready.set()
                    chunk = chunk.replace(b"lmfs-worker-ready\n", b"")
                self.output.feed(chunk)

        threading.Thread(target=drain, daemon=True, name="lmfs-worker-output").start()
        if not ready.wait(180) or self.proc.poll() is not None:
            raise AdapterLoadError(f"the grading worker did not start: {self.output.text()[-500:]}")

    def _ctl(self, request: dict) -> Any:
        assert self.channel is not None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(60)
            s.connect(str(self.channel / "ctl.sock"))
            codec = _w.Peer(s, trusted=True)
            _w.send_frame(s, codec._dumps(request))
            msg = codec._loads(_w.recv_frame(s))
        if not isinstance(msg, tuple) or len(msg) != 2 or msg[0] != "ok":
            raise _w.ProtocolError("bad control reply")
        return msg[1]

    def connect_host(self, *, rank: int | None = None, world: int | None = None, group: str | None = None) -> None:
        if self.owner:
            self._start()
        assert self.channel is not None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.channel / "ctl.sock"))
        peer = _w.Peer(s, trusted=True)
        request = {"op": "host", "adapter": self.adapter, "paths": self.sys_path, "memory_mb": self.memory_mb,
                   "threads": self.threads}
        if world:
            request.update(rank=int(rank or 0), world=int(world), group=str(group), timeout=300)
        _w.send_frame(s, peer._dumps(request))
        try:
            msg = peer._loads(_w.recv_frame(s))
        except (EOFError, OSError) as exc:
            s.close()
            raise _w.WorkerDied(f"the adapter's process died while importing it ({exc}) | "
                                f"{self.output.text()[-800:]}") from None
        if not isinstance(msg, tuple) or len(msg) != 3 or msg[0] not in ("ready", "failed"):
            s.close()
            raise _w.ProtocolError("bad host handshake")
        if msg[0] == "failed":
            s.close()
            exc = peer._exception(msg[2])
            raise AdapterLoadError(f"adapter {self.adapter} failed to import: {exc}")
        self.peer = peer
        self.host_pid = int(msg[1])
        self._has = {}

    def get_peer(self, key: Any = None) -> _w.Peer:
        if self.peer is None or self.peer.closed:
            self.connect_host()
            self.host_key = key
        return self.peer  # type: ignore[return-value]

    def close_host(self) -> None:
        if self.peer is not None:
            try:
                self.peer.sock.close()
            except OSError:
                pass
        self.peer = None
        self.host_pid = None
        self._has = {}

    def reap(self, keep_host: bool) -> int:
        """Kill every process in the worker but the current host (and the host too unless ``keep_host``)."""
        if self.proc is None or self.proc.poll() is not None:
            return 0
        keep = [self.host_pid] if keep_host and self.host_pid and self.peer and not self.peer.closed else []
        try:
            return int(self._ctl({"op": "reap", "keep": keep}))
        except (OSError, EOFError, _w.ProtocolError):
            return 0

    def died(self, exc: _w.WorkerDied) -> _w.WorkerDied:
        """The host is gone: why, in the words the grade uses (its exit status, the end of its output)."""
        pid = self.host_pid
        self.close_host()
        code = None
        for _ in range(20):
            try:
                code = self._ctl({"op": "status", "pid": pid}) if pid else None
            except (OSError, EOFError, _w.ProtocolError):
                code = None
            if code is not None:
                break
            time.sleep(0.05)
        kind = "crashed"
        if code is None:
            why = "the adapter's process died"
        elif code < 0:
            import signal

            sig = signal.Signals(-code).name
            why = f"the adapter's process was killed by {sig}"
            if sig == "SIGKILL":
                kind, why = "memory", why + " (likely the OOM killer)"
        else:
            why = f"the adapter's process exited with code {code} in the middle of the test"
        from lmfs.harness.grade import crash_context

        context = crash_context(self.output.text(limit=8000))
        return _w.WorkerDied(why + (" | " + context if context else ""), kind)

    def close(self) -> None:
        self.close_host()
        if self.proc is not None and self.owner:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, 9)
                except OSError:
                    self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def descriptor(self) -> dict:
        self._start() if self.owner else None
        return {"adapter": self.adapter, "channel": str(self.channel), "scratch": str(self.scratch),
                "sandbox": self.sandbox.as_dict(), "readonly": [str(p) for p in self.readonly],
                "sys_path": self.sys_path, "memory_mb": self.memory_mb, "tmp_mb": self.tmp_mb,
                "threads": self.threads}


class RemoteAdapter:
    """The ``adapter`` of a graded run: the same view as :class:`~lmfs.harness.adapter.Adapter`, each call a
    request to the host that imported the submission."""

    def __init__(self, session: WorkerSession, rank_session: bool = False) -> None:
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_rank", rank_session)

    @property
    def module(self) -> Any:
        raise AttributeError("the graded adapter runs in another process; specs use its functions")

    def _peer(self) -> _w.Peer:
        s = self._session
        if self._rank and (s.peer is None or s.peer.closed):
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                s.connect_host(rank=dist.get_rank(), world=dist.get_world_size(),
                               group=os.environ.get("MASTER_PORT", "0"))
                return s.peer  # type: ignore[return-value]
        return s.get_peer()

    def _has(self, name: str) -> tuple[bool, bool]:
        s = self._session
        peer = self._peer()
        found = s._has.get(name)
        if found is None:
            found = self._request(peer, "has", name)
            if not (isinstance(found, tuple) and len(found) == 2):
                found = (False, False)
            found = (found[0] is True, found[1] is True)
            s._has[name] = found
        return found

    def _request(self, peer: _w.Peer, op: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return peer.request(0, op, *args, **kwargs)
        except _w.WorkerDied as exc:
            raise self._session.died(exc) from None

    def has(self, name: str) -> bool:
        return self._has(name)[0]

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("_", "hypothesis_", "pytest")):
            raise AttributeError(name)
        is_callable, exists = self._has(name)
        spec = self._session.adapter
        if not exists:
            raise _unavailable(AdapterMissing, f"adapter {spec} does not define {name}()")
        if not is_callable:
            return self._request(self._peer(), "getattr", name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return self._request(self._peer(), "call_attr", name, *args, **kwargs)
            except NotImplementedError as exc:
                if getattr(exc, "lmfs_in_adapter", False):
                    raise _unavailable(AdapterNotImplemented, str(exc)) from None
                raise

        call.__name__ = name
        call.__qualname__ = name
        return call

    def __repr__(self) -> str:
        return f"RemoteAdapter({self._session.adapter!r})"

    def __reduce__(self) -> tuple:
        """A rank of ``run_ranks`` gets an adapter of its own that reaches the same worker."""
        return (_rank_adapter, (self._session.descriptor(),))


def _rank_adapter(desc: dict) -> RemoteAdapter:
    info = SandboxInfo(desc["sandbox"]["mode"], desc["sandbox"].get("tool"), desc["sandbox"].get("reason"))
    session = WorkerSession(desc["adapter"], scratch=Path(desc["scratch"]), sandbox=info,
                            readonly=[Path(p) for p in desc["readonly"]], sys_path=list(desc["sys_path"]),
                            memory_mb=desc["memory_mb"], tmp_mb=desc["tmp_mb"], threads=desc["threads"],
                            channel=Path(desc["channel"]))
    return RemoteAdapter(session, rank_session=True)
