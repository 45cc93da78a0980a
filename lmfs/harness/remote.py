"""The trusted side of a graded run: the ``adapter`` the specs see when ``lmfs grade`` runs them.

The spec process never imports the submission. :class:`WorkerSession` starts ``worker.py`` once (in the sandbox
:mod:`lmfs.harness.sandbox` chose), and asks it for a *host* — a process forked from it that imports the adapter —
per spec module; :class:`RemoteAdapter` turns ``adapter.run_linear(...)`` into a request to that host (see
:mod:`lmfs.harness.worker` for what crosses and how). After every test the session has the worker kill every
process in the sandbox but the current host; when a module's last test ends, the host goes too.

A rank of a distributed spec (``run_ranks``) unpickles the adapter as a :class:`RemoteAdapter` of its own: it
asks the same worker for a host that joins a gloo group with the other ranks' hosts inside the sandbox, so the
submission's collectives run there while the spec's checks stay in the rank.

A *colocated* spec's rank code (``run_colocated``: it must watch the submission from inside its process — wrap
``torch.distributed``'s collectives, look at the weights its layers see) goes the other way:
:meth:`WorkerSession.run_colocated` ships the function by value (:class:`~lmfs.harness.worker.Shipped`: its
source and the same-module code it names, not the spec file), asks the worker for one host per rank in one gloo
group, runs it in each next to the submission and takes back only the return values, which
:func:`lmfs.harness.distributed.plain_result` then checks; the spec decides its verdict from them in the
trusted process.
"""

from __future__ import annotations

import os
import select
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

    def run_colocated(self, fn: Any, world: int, args: tuple = (), rank_args: list | None = None,
                      timeout: float = 120.0) -> list[Any]:
        """``fn(rank, world, adapter, *args, *rank_args[rank])`` on ``world`` hosts of one gloo group in the
        worker, each with the submission's module as ``adapter``; the ranks' return values, as decoded (check
        them with :func:`~lmfs.harness.distributed.plain_result`). A rank that raises, dies, sends anything but
        its result, or does not finish within ``timeout`` fails the call; every host of the run is killed
        before it returns."""
        from lmfs.harness.distributed import RankFailed

        if self.owner:
            self._start()
        assert self.channel is not None
        shipped = _w.Shipped(fn)
        group = f"colocated-{uuid.uuid4().hex}"
        deadline = time.monotonic() + timeout
        peers: list[_w.Peer] = []
        pids: list[int] = []
        try:
            for rank in range(world):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(self.channel / "ctl.sock"))
                peer = _w.Peer(sock, trusted=True)
                peers.append(peer)
                _w.send_frame(sock, peer._dumps({
                    "op": "host", "adapter": self.adapter, "paths": self.sys_path, "memory_mb": self.memory_mb,
                    "threads": 1, "rank": rank, "world": world, "group": group, "timeout": timeout}))
            for rank, peer in enumerate(peers):  # every host joins the group, then imports the adapter
                msg = self._colocated_reply(peer, rank, deadline, timeout)
                if not isinstance(msg, tuple) or len(msg) != 3 or msg[0] not in ("ready", "failed"):
                    raise RankFailed(f"rank {rank}: bad host handshake")
                if msg[0] == "failed":
                    raise AdapterLoadError(f"adapter {self.adapter} failed to import: {peer._exception(msg[2])}")
                if type(msg[1]) is int:
                    pids.append(msg[1])
            for rank, peer in enumerate(peers):
                extra = tuple(rank_args[rank]) if rank_args is not None else ()
                peer._send(("req", 1, 0, "colocated", (shipped, rank, world, (*args, *extra)), {}, []))
                # nothing of ours stays shared: what comes back cannot name (and overwrite) a trusted tensor
                peer._shared.clear()
                peer._sid_of.clear()
            results: dict[int, Any] = {}
            pending = dict(enumerate(peers))
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RankFailed(f"ranks {sorted(pending)} did not finish within {timeout:.0f} s")
                readable, _, _ = select.select([p.sock for p in pending.values()], [], [], min(left, 1.0))
                for sock in readable:
                    rank = next(r for r, p in pending.items() if p.sock is sock)
                    msg = self._colocated_reply(pending.pop(rank), rank, deadline, timeout)
                    if not (isinstance(msg, tuple) and len(msg) == 4 and msg[0] in ("ok", "err") and msg[1] == 1):
                        raise RankFailed(f"rank {rank}: the worker sent something other than the rank's result")
                    if msg[0] == "err":
                        raise RankFailed(f"rank {rank} failed: {_rank_error(msg[2])}")
                    results[rank] = msg[2]
            return [results[r] for r in range(world)]
        finally:
            for peer in peers:
                try:
                    peer.sock.close()
                except OSError:
                    pass
            if pids:
                try:
                    self._ctl({"op": "kill", "pids": pids})
                except (OSError, EOFError, _w.ProtocolError):
                    pass

    def _colocated_reply(self, peer: _w.Peer, rank: int, deadline: float, timeout: float) -> Any:
        from lmfs.harness.distributed import RankFailed

        peer.sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = _w.recv_frame(peer.sock)
        except TimeoutError:
            raise RankFailed(f"rank {rank} did not finish within {timeout:.0f} s") from None
        except (EOFError, OSError) as exc:
            from lmfs.harness.grade import crash_context

            context = crash_context(self.output.text(limit=8000))
            raise _w.WorkerDied(f"rank {rank}: the adapter's process died ({exc})"
                                + (" | " + context if context else "")) from None
        except _w.ProtocolError as exc:
            raise RankFailed(f"rank {rank}: {exc}") from None
        try:
            return peer._loads(data)
        except Exception as exc:  # a forged or torn message: the trusted decoder refused it
            raise RankFailed(f"rank {rank}: unreadable result ({type(exc).__name__}: {str(exc)[:200]})") from None

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

    def _run_colocated(self, fn: Any, world: int, args: tuple, rank_args: list | None, timeout: float) -> list:
        """See :meth:`WorkerSession.run_colocated` (``run_colocated`` in :mod:`lmfs.harness.distributed`)."""
        return self._session.run_colocated(fn, world, args, rank_args, timeout)

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


def _rank_error(desc: Any) -> str:
    """``Type: message`` of an exception a colocated rank raised (the worker's description of it), in the form
    the grade's outcome classifier reads (:func:`lmfs.harness.pytest_plugin.exception_outcome`)."""
    if not isinstance(desc, tuple) or len(desc) != 4:
        return "RemoteError: an unreadable exception"
    type_name, builtin_name, message, tb = (str(x)[:_w.MAX_TEXT] for x in desc)
    name = {"_AttributeMissing": "AdapterMissing", "_NotImplementedInAdapter": "NotImplementedError"}.get(
        builtin_name, builtin_name)
    if not name.isidentifier():
        name = "RemoteError"
    return f"{name}: {message}\n(in the worker: {type_name})\n{tb}"


def _rank_adapter(desc: dict) -> RemoteAdapter:
    info = SandboxInfo(desc["sandbox"]["mode"], desc["sandbox"].get("tool"), desc["sandbox"].get("reason"))
    session = WorkerSession(desc["adapter"], scratch=Path(desc["scratch"]), sandbox=info,
                            readonly=[Path(p) for p in desc["readonly"]], sys_path=list(desc["sys_path"]),
                            memory_mb=desc["memory_mb"], tmp_mb=desc["tmp_mb"], threads=desc["threads"],
                            channel=Path(desc["channel"]))
    return RemoteAdapter(session, rank_session=True)
