"""The two ends of a graded adapter's calls: the submission runs in a worker process, the specs and every verdict
in the trusted one; this file is both.

It is self-contained on purpose (the standard library and torch, nothing from lmfs): the sandbox shows the worker
only this file, the Python environment and the submission's folder, and runs it as a script::

    python worker.py serve CHANNEL_DIR     # a zygote: imports torch once, forks one host per connection
    python worker.py check ADAPTER [PATH]  # import the adapter once and say whether it loaded

The trusted side imports it as :mod:`lmfs.harness.worker` and talks to a host through :class:`Peer`.

What crosses (both ways, one codec, never plain pickle of foreign classes):

* **values** — None, bool, int, float, complex, str, bytes, lists / tuples / dicts / sets of values, slices,
  ``pathlib`` paths, numpy arrays and scalars (not of object dtype), torch dtypes / devices / sizes. Subclasses
  of these arrive as the plain base type (a float whose ``__eq__`` lies arrives as a float).
* **tensors** — by value, each with a *shared id*: both sides keep their copy (weakly) and every message carries
  the in-place changes (data, ``.grad``) made since the last one, so ``optimizer.step()`` in the worker moves the
  trusted process's parameters, and gradients the trusted process computed reach the worker. A tensor that
  carries an autograd graph arrives as the output of a bridge node: ``backward`` in the receiver asks the sender
  to run its part of the backward pass (hooks there fire; leaf gradients come back as ``.grad`` changes).
* **handles** — everything else (the submission's classes, optimizers, tokenizers, modules, generators; a spec's
  helper objects) stays where it lives; the other side gets a proxy whose attribute reads, calls, item access,
  iteration and ``len`` are requests. Proxies of the worker's classes are real classes whose bases include the
  torch base classes the remote class derives from (``issubclass(cls, torch.optim.Optimizer)`` holds), never
  the remote class itself.
* **modules by value (trusted to worker only)** — a ``torch.nn.Module`` is rebuilt in the worker (its class
  imported there when it comes from torch or transformers; a spec's own subclass travels with its class's
  source), its parameters and buffers shared tensors; any other object of the trusted side is a handle (an
  optimizer the worker steps must be the trusted one, not a copy).

* **spec code by value (trusted to worker only)** — for a spec whose rank code must run next to the submission
  (``run_colocated``: it wraps the collectives, watches the layers' weights), the function travels as source
  with the same-module classes, functions and plain constants it names (never the spec file, its path or its
  other references); a host joined to a gloo group runs it with the adapter's module beside it and sends its
  result back as plain data (values and tensors), which the trusted side checks again strictly.

The trusted side decodes with an unpickler that builds no object of a foreign class (its ``find_class`` knows a
handful of builtins), so nothing the worker sends can run code in the trusted process; the worker's proxies of
trusted objects reach only public attributes (no ``_`` names beyond the protocol's dunders).
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import signal
import socket
import struct
import sys
import traceback
import types
import weakref
from typing import Any

MAX_MESSAGE = 1 << 31  # bytes in one message (a tensor of up to 2 GiB)
MAX_TEXT = 4000  # characters of an exception message or traceback that cross

# what the worker may import to rebuild trusted objects sent by value (top-level packages)
WORKER_IMPORTABLE = ("torch", "numpy", "transformers", "tokenizers", "tiktoken", "collections", "builtins",
                     "copyreg", "pathlib", "functools", "math", "typing", "enum", "dataclasses", "regex", "re",
                     "datetime", "decimal", "fractions", "_codecs", "codecs")
# what shipped spec code (``Shipped``) may import besides those: standard-library helpers it names
SHIPPED_IMPORTABLE = (*WORKER_IMPORTABLE, "copy", "weakref", "traceback", "time", "itertools", "operator",
                      "contextlib", "os", "sys", "gc", "random", "threading", "hashlib", "struct", "json",
                      "statistics", "resource")
# what the trusted side builds from the worker's bytes: these and nothing else
TRUSTED_GLOBALS = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
    ("builtins", "range"), ("builtins", "bytearray"), ("collections", "OrderedDict"), ("_codecs", "encode"),
}
# dunders a proxy forwards (any other ``_`` name is local, or refused when the other side asks for it)
FORWARDED_DUNDERS = ("__call__", "__len__", "__iter__", "__next__", "__getitem__", "__setitem__", "__delitem__",
                     "__contains__", "__enter__", "__exit__", "__bool__")
# torch base classes a proxy class may derive from (by the remote class's MRO names)
SAFE_BASES = {
    "torch.optim.optimizer.Optimizer": ("torch.optim", "Optimizer"),
    "torch.nn.modules.module.Module": ("torch.nn", "Module"),
}


class RemoteError(Exception):
    """An exception in the other process whose type has no safe local counterpart: ``Type: message``."""


class WorkerDied(Exception):
    """The worker process ended (crash, signal, exit) while the trusted side waited for it. ``kind`` is the
    grading outcome it stands for (``crashed`` or ``memory``)."""

    def __init__(self, message: str, kind: str = "crashed") -> None:
        super().__init__(message)
        self.kind = kind


class ProtocolError(Exception):
    """A message that does not follow the protocol (a forged or torn frame)."""


# ----------------------------------------------------------------------------------------------- framing


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack("!Q", len(payload)) + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 22))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    (n,) = struct.unpack("!Q", _recv_exact(sock, 8))
    if n > MAX_MESSAGE:
        raise ProtocolError(f"message of {n} bytes is over the limit")
    return _recv_exact(sock, n)


# ----------------------------------------------------------------------------------------------- codec


class _Ref:
    """A placeholder the unpickler returns for a persistent id; replaced after loading (so a crafted BUILD
    opcode can never reach a real object)."""

    __slots__ = ("pid",)

    def __init__(self, pid: Any) -> None:
        self.pid = pid

    def __setstate__(self, state: Any) -> None:
        raise ProtocolError("state applied to a reference")

    def __reduce__(self):  # pragma: no cover - never pickled
        raise ProtocolError("a reference cannot be pickled")


def _torch():
    import torch

    return torch


def _np():
    try:
        import numpy

        return numpy
    except ImportError:  # pragma: no cover
        return None


_PLAIN = (type(None), bool, int, float, complex, str, bytes)
_PICKLE = object()
from collections import OrderedDict as _OrderedDict  # noqa: E402  # "pickle this object as pickle would" (its class is importable in the worker)

_CONTAINERS = (list, tuple, dict, set, frozenset)


def _plain_base(obj: Any) -> type | None:
    for base in (bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset):
        if isinstance(obj, base):
            return base
    return None


class _Bridge:
    """The autograd graph of a tensor that stayed behind: ``backward`` runs it (see :class:`Peer`)."""


DIGEST_MAX_NUMEL = 1 << 16


def _digest(t) -> bytes | None:
    """A content digest of a small tensor: collectives (``dist.broadcast``, ``all_reduce``) write in place
    without bumping the version counter, so small tensors are compared by content too."""
    if t.numel() > DIGEST_MAX_NUMEL or t.device.type != "cpu":
        return None
    import hashlib

    return hashlib.blake2b(_tensor_bytes(t), digest_size=16).digest()


def _tensor_bytes(t) -> bytes:
    torch = _torch()
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.is_sparse:
        t = t.to_dense()
    t = t.contiguous()
    if t.numel() == 0:
        return b""
    return t.view(-1).view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes()


def _tensor_from(payload: bytes, dtype_name: str, shape: tuple):
    torch = _torch()
    dtype = getattr(torch, dtype_name)
    if not isinstance(dtype, torch.dtype):
        raise ProtocolError(f"not a dtype: {dtype_name}")
    if not payload:
        return torch.empty(shape, dtype=dtype)
    if dtype == torch.bool:
        return torch.frombuffer(bytearray(payload), dtype=torch.bool).reshape(shape).clone()
    flat = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    return flat.view(dtype).reshape(shape)


class _Pickler(pickle.Pickler):
    def __init__(self, fh: io.BytesIO, peer: Peer, by_value: bool) -> None:
        super().__init__(fh, protocol=4)
        self.peer = peer
        self.by_value = by_value  # objects of importable classes go by value (trusted -> worker only)

    def persistent_id(self, obj: Any) -> Any:
        t = type(obj)
        if t in _PLAIN or t in _CONTAINERS or t is slice or t is range:
            return None
        if t is _Handle:
            return ("H", self.peer.export(obj.obj))
        if t is Shipped:
            if not self.peer.trusted:
                raise ProtocolError("only the trusted side ships code")
            return ("F", obj.name, obj.source, obj.imports)
        own = _proxied_handle(obj, self.peer)
        if own is not None:  # a proxy of the other side's object goes back as its handle
            return ("H", (not self.peer.trusted, own, {}))
        if id(obj) in self.peer._probing:
            return None
        torch = sys.modules.get("torch")
        if torch is not None:
            if isinstance(obj, torch.Tensor):
                return ("T", self.peer._encode_tensor(obj))
            if isinstance(obj, torch.dtype):
                return ("D", str(obj).rsplit(".", 1)[-1])
            if isinstance(obj, torch.device):
                return ("V", str(obj))
            if t is torch.Size:
                return ("S", tuple(int(x) for x in obj))
        np = sys.modules.get("numpy")
        if np is not None:
            if isinstance(obj, np.ndarray) and obj.dtype != object:
                return ("N", obj.dtype.str, tuple(obj.shape), np.ascontiguousarray(obj).tobytes())
            if isinstance(obj, np.generic) and not isinstance(obj, np.object_):
                return ("n", obj.dtype.str, obj.tobytes())
        import pathlib

        if isinstance(obj, pathlib.PurePath):
            return ("p", str(obj))
        if isinstance(obj, types.ModuleType):
            return ("H", self.peer.export(obj))
        if t is _OrderedDict:  # kept as it is (module hooks need it); the trusted side may build it
            return None
        if t is memoryview or t is bytearray:
            return ("P", "bytes", bytes(obj))
        base = _plain_base(obj)
        if base is not None and not hasattr(obj, "_fields"):
            if base in (list, tuple, set, frozenset):
                return ("P", base.__name__, list(obj))
            if base is dict:
                return ("P", "dict", list(dict.items(obj)))
            return ("P", base.__name__, base(obj) if base is not bool else bool(obj))
        if self.by_value:
            shipped = self.peer._by_value(obj)
            if shipped is _PICKLE:
                return None
            if shipped is not None:
                return shipped
        return ("H", self.peer.export(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh: io.BytesIO, peer: Peer) -> None:
        super().__init__(fh)
        self.peer = peer
        self.refs: list[_Ref] = []

    def find_class(self, module: str, name: str) -> Any:
        if self.peer.trusted:
            if (module, name) not in TRUSTED_GLOBALS:
                raise ProtocolError(f"refused to build {module}.{name} from the worker's message")
            return getattr(sys.modules.get(module) or __import__(module), name)
        if module.split(".")[0] not in WORKER_IMPORTABLE and module != "__lmfs_shipped__":
            raise ProtocolError(f"cannot import {module}.{name} here")
        if module == "__lmfs_shipped__":
            return self.peer._shipped[name]
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or not isinstance(pid[0], str):
            raise ProtocolError("bad persistent id")
        if not self.peer.trusted:  # the worker rebuilds the trusted side's objects as it reads them
            return self.peer._resolve_ref(pid)
        ref = _Ref(pid)
        self.refs.append(ref)
        return ref


class Peer:
    """One end of a connection: requests to the other end, serving its requests meanwhile (calls may nest:
    a worker function calling back a trusted object that calls the worker again)."""

    def __init__(self, sock: socket.socket, *, trusted: bool, root: Any = None) -> None:
        self.sock = sock
        self.trusted = trusted
        self.root = root  # what handle 0 is on this side (the adapter module in the worker)
        self._objects: dict[int, Any] = {}  # handle id -> object exported (held strongly)
        self._object_ids: dict[int, int] = {}  # id(obj) -> handle id
        self._proxies: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._next_handle = 1
        self._next_req = 0
        # shared tensors: sid -> [weakref, data version, grad state]; id(tensor) -> sid
        self._shared: dict[int, list] = {}
        self._sid_of: dict[int, int] = {}
        self._next_sid = 1 if trusted else 2  # the trusted side's ids are odd, the worker's even
        self._nonleaf_copies: set[int] = set()  # sids of our leaf copies of the other side's non-leaf tensors
        self._graphs: dict[int, Any] = {}  # graph id -> (output tensor, input sids) kept for backward
        self._shipped: dict[str, type] = {}
        self._proxy_classes: dict[Any, type] = {}
        self._class_proxies: dict[str, type] = {}
        self._probing: set[int] = set()
        self.closed = False

    # ------------------------------------------------------------------ handles
    def export(self, obj: Any) -> tuple:
        hid = self._object_ids.get(id(obj))
        if hid is None or self._objects.get(hid) is not obj:
            hid = self._next_handle
            self._next_handle += 1
            self._objects[hid] = obj
            self._object_ids[id(obj)] = hid
        info: dict[str, Any] = {"type": _qualname(type(obj)), "callable": callable(obj)}
        if isinstance(obj, type):
            info["class"] = _qualname(obj)
            info["mro"] = [_qualname(c) for c in obj.__mro__]
        else:
            info["mro"] = [_qualname(c) for c in type(obj).__mro__]
        return (self.trusted, hid, info)

    def _resolve_handle(self, owner_trusted: Any, hid: Any, info: Any) -> Any:
        if not isinstance(hid, int) or not isinstance(info, dict):
            raise ProtocolError("bad handle")
        if bool(owner_trusted) == self.trusted:  # one of ours coming back
            if hid not in self._objects:
                raise ProtocolError(f"unknown handle {hid}")
            return self._objects[hid]
        proxy = self._proxies.get(hid)
        if proxy is None:
            proxy = self._make_proxy(hid, info)
            self._proxies[hid] = proxy
        return proxy

    def _make_proxy(self, hid: int, info: dict) -> Any:
        mro = [m for m in info.get("mro", []) if isinstance(m, str)]
        bases: list[type] = []
        for name in mro:
            if name in SAFE_BASES and "torch" in sys.modules:
                mod, attr = SAFE_BASES[name]
                base = getattr(__import__(mod, fromlist=[attr]), attr)
                if base not in bases:
                    bases.append(base)
        if "class" not in info and any(m in ("_io._TextIOBase", "io.TextIOBase") for m in mro):
            return _RemoteTextFile(self, hid)
        if "class" not in info and any(m in ("_io._IOBase", "io.IOBase") for m in mro):
            return _RemoteFile(self, hid)
        label = str(info.get("class") or info.get("type") or "object").rsplit(".", 1)[-1][:80]
        label = "".join(ch for ch in label if ch.isalnum() or ch == "_") or "object"
        if "class" in info:
            meta = _proxy_metaclass(bases)
            cls = meta(f"Remote{label}", (RemoteObject, *bases), {"__module__": "lmfs.remote"})
            type.__setattr__(cls, "_lmfs_peer", self)
            type.__setattr__(cls, "_lmfs_hid", hid)
            type.__setattr__(cls, "_lmfs_class_handle", True)
            self._class_proxies[str(info["class"])] = cls
            return cls
        cls = self._class_proxies.get(str(info.get("type")))
        key = (tuple(bases), label)
        if cls is None:
            cls = self._proxy_classes.get(key)
        if cls is None:
            meta = _proxy_metaclass(bases)
            cls = meta(f"Remote{label}", (RemoteObject, *bases), {"__module__": "lmfs.remote"})
            self._proxy_classes[key] = cls
        obj = object.__new__(cls)
        object.__setattr__(obj, "_lmfs_peer", self)
        object.__setattr__(obj, "_lmfs_hid", hid)
        object.__setattr__(obj, "_lmfs_callable", bool(info.get("callable")))
        return obj

    # ------------------------------------------------------------------ by value (trusted -> worker)
    def _by_value(self, obj: Any) -> tuple | None:
        cls = obj if isinstance(obj, type) else type(obj)
        mod = getattr(cls, "__module__", "") or ""
        top = mod.split(".")[0]
        torch = sys.modules.get("torch")
        if isinstance(obj, type):
            if top in WORKER_IMPORTABLE and _importable(obj):
                return _PICKLE  # pickled by reference, the worker imports it
            if torch is not None and issubclass(obj, torch.nn.Module):
                source = _class_source(obj)
                if source is not None:
                    return ("K", obj.__name__, source[0], source[1])
            return ("H", self.export(obj))
        if torch is not None and isinstance(obj, torch.nn.Module):
            return _PICKLE  # by value; its class is pickled by reference or shipped (above)
        if top == "transformers" and not callable(obj) and _importable(cls):
            return _PICKLE  # a model's configuration objects travel with it

        return None

    # ------------------------------------------------------------------ tensors
    def _grad_state(self, t) -> tuple:
        g = t.grad if t.is_leaf else None
        return (None, 0) if g is None else (id(g), g._version, _digest(g))

    def _encode_tensor(self, t) -> tuple:
        sid = self._sid_of.get(id(t))
        entry = self._shared.get(sid) if sid is not None else None
        fresh = entry is None or entry[0]() is not t
        if fresh:
            sid = self._next_sid
            self._next_sid += 2
            self._track(sid, t)
        torch = _torch()
        grad = None
        if t.is_leaf and t.grad is not None:
            grad = (t.grad.dtype.__str__().rsplit(".", 1)[-1], tuple(t.grad.shape), _tensor_bytes(t.grad))
        graph = None
        if fresh and t.requires_grad and t.grad_fn is not None:
            gid = self._next_sid
            self._next_sid += 2
            inputs = self._graph_inputs(t)
            self._graphs[gid] = (t, inputs)
            try:  # a custom autograd Function's saved tensors, as copies (specs look at what it saved)
                saved = [x.detach() for x in t.grad_fn.saved_tensors]
            except (AttributeError, RuntimeError):
                saved = []
            graph = (gid, inputs, saved)
        self._shared[sid][1] = t._version
        self._shared[sid][2] = self._grad_state(t)
        self._shared[sid][3] = _digest(t)
        return (
            sid, str(t.dtype).rsplit(".", 1)[-1], tuple(t.shape), _tensor_bytes(t),
            bool(t.requires_grad), bool(t.is_leaf), isinstance(t, torch.nn.Parameter), grad, graph,
        )

    def _track(self, sid: int, t) -> None:
        shared, sid_of = self._shared, self._sid_of
        key = id(t)

        def gone(_ref, sid=sid, key=key):
            shared.pop(sid, None)
            if sid_of.get(key) == sid:
                sid_of.pop(key, None)

        shared[sid] = [weakref.ref(t, gone), t._version, self._grad_state(t), _digest(t)]
        sid_of[key] = sid

    def _graph_inputs(self, t) -> list[int]:
        """The shared ids of the leaves ``t`` depends on (AccumulateGrad nodes whose tensor is shared)."""
        seen, stack, found = set(), [t.grad_fn], []
        while stack:
            fn = stack.pop()
            if fn is None or id(fn) in seen:
                continue
            seen.add(id(fn))
            var = getattr(fn, "variable", None)
            if var is not None:
                sid = self._sid_of.get(id(var))
                if sid is not None and sid not in found:
                    found.append(sid)
                continue
            stack.extend(nf for nf, _ in fn.next_functions)
            if len(seen) > 200_000:
                break
        return found

    def _decode_tensor(self, spec: tuple):
        torch = _torch()
        if not isinstance(spec, tuple) or len(spec) != 9:
            raise ProtocolError("bad tensor")
        sid, dtype, shape, payload, rg, leaf, is_param, grad, graph = spec
        if not isinstance(sid, int) or not isinstance(payload, bytes):
            raise ProtocolError("bad tensor")
        entry = self._shared.get(sid)
        existing = entry[0]() if entry is not None else None
        data = _tensor_from(payload, dtype, tuple(shape))
        if existing is not None:
            self._apply_data(sid, existing, data, grad)
            return existing
        if graph is not None:
            t = self._bridge(graph, data)
        elif is_param:
            t = torch.nn.Parameter(data, requires_grad=bool(rg))
        else:
            t = data
            if rg and (t.is_floating_point() or t.is_complex()):
                t.requires_grad_(True)
            if rg and not leaf:
                self._nonleaf_copies.add(sid)
        if grad is not None and t.is_leaf:
            t.grad = _tensor_from(grad[2], grad[0], tuple(grad[1]))
        self._track(sid, t)
        return t

    def _apply_data(self, sid: int, t, data, grad: Any) -> None:
        torch = _torch()
        entry = self._shared.get(sid)
        with torch.no_grad():
            if tuple(t.shape) == tuple(data.shape) and t.dtype == data.dtype:
                if not torch.equal(t.detach(), data):
                    t.detach().copy_(data)
            else:
                t.data = data
        if t.is_leaf:
            if grad is None:
                if t.grad is not None:
                    t.grad = None
            else:
                g = _tensor_from(grad[2], grad[0], tuple(grad[1]))
                if t.grad is None or t.grad.shape != g.shape or t.grad.dtype != g.dtype:
                    t.grad = g
                elif not torch.equal(t.grad, g):
                    t.grad.copy_(g)
        if entry is not None:
            entry[1] = t._version
            entry[2] = self._grad_state(t)
            entry[3] = _digest(t)

    def _bridge(self, graph: tuple, data):
        torch = _torch()
        gid, input_sids, saved = graph
        saved = [x for x in saved if isinstance(x, torch.Tensor)] if isinstance(saved, list) else []
        inputs = []
        for s in input_sids if isinstance(input_sids, list) else []:
            e = self._shared.get(s)
            x = e[0]() if e is not None else None
            if x is not None and x.requires_grad:
                inputs.append((s, x))
        fn = _bridge_function()
        anchor = torch.zeros((), requires_grad=True)  # keeps the node in the graph when no input needs grad
        return fn.apply(self, gid, [s for s, _ in inputs], data, saved, anchor, *[x for _, x in inputs])

    def _sync_out(self) -> list:
        """In-place changes to shared tensors since the last message (data, .grad)."""
        changes = []
        for sid, entry in list(self._shared.items()):
            t = entry[0]()
            if t is None:
                continue
            gs = self._grad_state(t)
            dg = _digest(t)
            if t._version != entry[1] or gs != entry[2] or dg != entry[3]:
                grad = None
                if t.is_leaf and t.grad is not None:
                    grad = (str(t.grad.dtype).rsplit(".", 1)[-1], tuple(t.grad.shape), _tensor_bytes(t.grad))
                changes.append((sid, str(t.dtype).rsplit(".", 1)[-1], tuple(t.shape), _tensor_bytes(t), grad))
                entry[1], entry[2], entry[3] = t._version, gs, dg
        return changes

    def _sync_in(self, changes: Any) -> None:
        if not isinstance(changes, list):
            raise ProtocolError("bad sync")
        for item in changes:
            if not isinstance(item, tuple) or len(item) != 5:
                raise ProtocolError("bad sync entry")
            sid, dtype, shape, payload, grad = item
            entry = self._shared.get(sid)
            t = entry[0]() if entry is not None else None
            if t is None:
                continue
            if sid in self._nonleaf_copies:
                grad = (str(t.grad.dtype).rsplit(".", 1)[-1], tuple(t.grad.shape), _tensor_bytes(t.grad)) \
                    if t.grad is not None else None
            self._apply_data(sid, t, _tensor_from(payload, dtype, tuple(shape)), grad)

    # ------------------------------------------------------------------ messages
    def _dumps(self, obj: Any, by_value: bool | None = None) -> bytes:
        fh = io.BytesIO()
        _Pickler(fh, self, self.trusted if by_value is None else by_value).dump(obj)
        return fh.getvalue()

    def _loads(self, data: bytes) -> Any:
        up = _Unpickler(io.BytesIO(data), self)
        obj = up.load()
        if not up.refs:
            return obj
        return self._replace_refs(obj, {})

    def _resolve_ref(self, pid: tuple) -> Any:
        kind = pid[0]
        if kind == "T":
            return self._decode_tensor(self._replace_refs(pid[1], {}) if self.trusted else pid[1])
        if kind == "H":
            return self._resolve_handle(*pid[1])
        if kind == "D":
            torch = _torch()
            dt = getattr(torch, str(pid[1]), None)
            if not isinstance(dt, torch.dtype):
                raise ProtocolError("bad dtype")
            return dt
        if kind == "V":
            return _torch().device(str(pid[1]))
        if kind == "S":
            return _torch().Size([int(x) for x in pid[1]])
        if kind == "N":
            np = _np()
            dtype = np.dtype(str(pid[1]))
            if dtype.hasobject:
                raise ProtocolError("object arrays do not cross")
            return np.frombuffer(bytes(pid[3]), dtype=dtype).reshape(tuple(pid[2])).copy()
        if kind == "n":
            np = _np()
            dtype = np.dtype(str(pid[1]))
            if dtype.hasobject:
                raise ProtocolError("object scalars do not cross")
            return np.frombuffer(bytes(pid[2]), dtype=dtype)[0]
        if kind == "p":
            import pathlib

            return pathlib.Path(str(pid[1]))
        if kind == "P":
            name, value = pid[1], pid[2]
            if name == "dict":
                return dict(self._replace_refs(value, {}))
            ctor = {"bool": bool, "int": int, "float": float, "complex": complex, "str": str, "bytes": bytes,
                    "list": list, "tuple": tuple, "set": set, "frozenset": frozenset}.get(name)
            if ctor is None:
                raise ProtocolError("bad plain value")
            value = self._replace_refs(value, {})
            if type(value) not in (*_PLAIN, list):
                raise ProtocolError("bad plain value")
            return ctor(value)
        if kind == "B" and not self.trusted:
            return self._loads(bytes(pid[1]))
        if kind == "K" and not self.trusted:
            return self._ship_class(str(pid[1]), str(pid[2]), pid[3])
        if kind == "F" and not self.trusted:
            return _ShippedCode(self._ship_class(str(pid[1]), str(pid[2]), pid[3], SHIPPED_IMPORTABLE))
        raise ProtocolError(f"unknown persistent id {kind!r}")

    def _replace_refs(self, obj: Any, memo: dict) -> Any:
        if isinstance(obj, _Ref):
            key = id(obj)
            if key not in memo:
                memo[key] = self._resolve_ref(obj.pid)
            return memo[key]
        t = type(obj)
        if t is list:
            if id(obj) in memo:
                return memo[id(obj)]
            memo[id(obj)] = obj
            for i, x in enumerate(obj):
                obj[i] = self._replace_refs(x, memo)
            return obj
        if t is dict:
            if id(obj) in memo:
                return memo[id(obj)]
            memo[id(obj)] = obj
            items = [(self._replace_refs(k, memo), self._replace_refs(v, memo)) for k, v in obj.items()]
            obj.clear()
            obj.update(items)
            return obj
        if t is tuple:
            return tuple(self._replace_refs(x, memo) for x in obj)
        if t in (set, frozenset):
            return t(self._replace_refs(x, memo) for x in obj)
        if not self.trusted and t not in _PLAIN and hasattr(obj, "__dict__"):
            # an object rebuilt by value in the worker: its attributes may hold references
            for k, v in list(vars(obj).items()):
                if isinstance(v, (_Ref, list, dict, tuple, set)):
                    vars(obj)[k] = self._replace_refs(v, memo)
        return obj

    def _ship_class(self, name: str, source: str, imports: Any, importable: tuple = WORKER_IMPORTABLE) -> Any:
        """A spec's class or function rebuilt from its source (see :func:`_class_source`), in a namespace of
        its own with the modules and names it needs imported."""
        key = f"{name}-{hash(source)}"
        cls = self._shipped.get(key)
        if cls is None:
            ns: dict[str, Any] = {"__name__": "__lmfs_shipped__"}
            import importlib

            for alias, target in (imports or {}).items():
                modname, _, attr = str(target).partition(":")
                if modname.split(".")[0] not in importable:
                    continue
                try:
                    obj = importlib.import_module(modname)
                    for part in attr.split(".") if attr else ():
                        obj = getattr(obj, part)
                    ns[str(alias)] = obj
                except (ImportError, AttributeError):
                    pass
            import __future__

            # the spec module's ``from __future__ import annotations`` holds here too: annotations stay text
            code = compile(source, f"<spec {name}>", "exec", flags=__future__.annotations.compiler_flag,
                           dont_inherit=True)
            exec(code, ns)
            cls = ns[name]
            self._shipped[key] = cls
        return cls

    def _send(self, msg: tuple) -> None:
        send_frame(self.sock, self._dumps(msg))

    def _recv(self) -> tuple:
        try:
            data = recv_frame(self.sock)
        except (EOFError, ConnectionError, OSError) as exc:
            self.closed = True
            raise WorkerDied(f"the other process closed the connection ({exc})") from None
        msg = self._loads(data)
        if not isinstance(msg, tuple) or not msg or not isinstance(msg[0], str):
            raise ProtocolError("bad message")
        return msg

    def request(self, hid: int, op: str, *args: Any, **kwargs: Any) -> Any:
        self._next_req += 1
        req = self._next_req
        self._send(("req", req, hid, op, args, kwargs, self._sync_out()))
        while True:
            msg = self._recv()
            kind = msg[0]
            if kind == "req":
                self._serve_one(msg)
                continue
            if kind in ("ok", "err") and len(msg) == 4:
                _, rid, value, changes = msg
                self._sync_in(changes)
                if rid != req:
                    raise ProtocolError("reply to another request")
                if kind == "ok":
                    return value
                raise self._exception(value)
            raise ProtocolError(f"unexpected message {kind!r}")

    def serve_forever(self) -> None:
        while True:
            try:
                msg = self._recv()
            except WorkerDied:
                return
            if msg[0] != "req":
                raise ProtocolError("expected a request")
            self._serve_one(msg)

    def _serve_one(self, msg: tuple) -> None:
        if len(msg) != 7:
            raise ProtocolError("bad request")
        _, req, hid, op, args, kwargs, changes = msg
        try:
            self._sync_in(changes)
            if not isinstance(args, tuple) or not isinstance(kwargs, dict) or not isinstance(op, str):
                raise ProtocolError("bad request")
            result = self._perform(hid, op, args, kwargs)
            reply = ("ok", req, result, None)
        except BaseException as exc:  # everything goes back as a description
            if isinstance(exc, KeyboardInterrupt):
                raise
            reply = ("err", req, _describe(exc), None)
        try:
            payload = self._dumps((reply[0], reply[1], reply[2], self._sync_out()))
        except BaseException as exc:  # a result that cannot cross
            payload = self._dumps(("err", req, _describe(exc), self._sync_out()))
        send_frame(self.sock, payload)

    def _target(self, hid: Any) -> Any:
        if hid == 0:
            return self.root
        if not isinstance(hid, int) or hid not in self._objects:
            raise ProtocolError(f"unknown handle {hid!r}")
        return self._objects[hid]

    def _check_name(self, name: Any) -> str:
        if not isinstance(name, str):
            raise ProtocolError("attribute names are strings")
        if self.trusted and name.startswith("_") and name not in FORWARDED_DUNDERS:
            raise AttributeError(f"{name} is not reachable from the worker")
        return name

    def _perform(self, hid: Any, op: str, args: tuple, kwargs: dict) -> Any:
        if op == "backward":
            return self._run_backward(args[0], args[1])
        if op == "colocated" and hid == 0 and not self.trusted:
            return self._run_colocated(*args)
        obj = self._target(hid)
        if op == "call":
            return _container_handles(obj(*args, **kwargs), self, False)
        if op == "call_attr":  # getattr + call in one round trip
            name = self._check_name(args[0])
            fn = getattr(obj, name)
            if hid == 0 and not self.trusted:
                try:
                    return _container_handles(fn(*args[1:], **kwargs), self, False)
                except NotImplementedError as exc:
                    raise _NotImplementedInAdapter(f"NotImplementedError in adapter {name}(): {exc}") from exc
            return _container_handles(fn(*args[1:], **kwargs), self, False)
        if op == "getattr":
            name = self._check_name(args[0])
            value = getattr(obj, name)
            if self.trusted and isinstance(value, types.ModuleType):
                raise AttributeError(f"{name} is a module; not reachable from the worker")
            return _container_handles(value, self, True)
        if op == "setattr":
            setattr(obj, self._check_name(args[0]), args[1])
            return None
        if op == "has":
            name = self._check_name(args[0])
            return callable(getattr(obj, name, None)), hasattr(obj, name)
        if op == "getitem":
            return _container_handles(obj[args[0]], self, True)
        if op == "setitem":
            obj[args[0]] = args[1]
            return None
        if op == "delitem":
            del obj[args[0]]
            return None
        if op == "len":
            return len(obj)
        if op == "bool":
            return bool(obj)
        if op == "contains":
            return bool(args[0] in obj)
        if op == "iter":
            return _Handle(iter(obj))
        if op == "next":
            return _container_handles(next(obj), self, True)
        if op == "repr":
            return repr(obj)[:MAX_TEXT]
        if op == "str":
            return str(obj)[:MAX_TEXT]
        if op == "enter":
            return obj.__enter__()
        if op == "exit":
            return obj.__exit__(None, None, None)
        raise ProtocolError(f"unknown operation {op!r}")

    def _run_colocated(self, shipped: Any, rank: Any, world: Any, args: Any) -> Any:
        """``fn(rank, world, adapter, *args)`` for shipped spec code, the adapter's module beside it; the
        result goes back as plain data (tensors detached, as copies)."""
        if not isinstance(shipped, _ShippedCode) or not isinstance(args, tuple):
            raise ProtocolError("bad colocated request")
        if not isinstance(self.root, AdapterRoot):
            raise ProtocolError("no adapter here")
        return _detached(shipped.fn(int(rank), int(world), self.root, *args))

    def _run_backward(self, gid: Any, grad: Any) -> list:
        torch = _torch()
        if gid not in self._graphs:
            raise ProtocolError("unknown graph")
        out, input_sids = self._graphs[gid]
        leaves = []
        for s in input_sids:
            e = self._shared.get(s)
            x = e[0]() if e is not None else None
            leaves.append(x)
        before = {s: (x.grad.clone() if x is not None and x.grad is not None else None)
                  for s, x in zip(input_sids, leaves, strict=True) if s in self._nonleaf_copies}
        torch.autograd.backward(out, grad, retain_graph=True)
        grads = []
        for s, x in zip(input_sids, leaves, strict=True):
            if s in self._nonleaf_copies and x is not None and x.grad is not None:
                g = x.grad if before.get(s) is None else x.grad - before[s]
                x.grad = before.get(s)
                entry = self._shared.get(s)
                if entry is not None:
                    entry[2] = self._grad_state(x)
                grads.append((s, g))
            else:
                grads.append((s, None))
        return grads

    def _exception(self, desc: Any) -> BaseException:
        if not isinstance(desc, tuple) or len(desc) != 4:
            return RemoteError("an unreadable exception")
        type_name, builtin_name, message, tb = (str(x)[:MAX_TEXT] for x in desc)
        text = message
        if builtin_name == "_NotImplementedInAdapter":
            exc: BaseException = NotImplementedError(text)
            exc.lmfs_in_adapter = True  # type: ignore[attr-defined]
        elif builtin_name == "_AttributeMissing":
            exc = AttributeError(text)
            exc.lmfs_missing = True  # type: ignore[attr-defined]
        else:
            cls = getattr(builtins, builtin_name, None)
            if isinstance(cls, type) and issubclass(cls, Exception) and cls not in (StopAsyncIteration,):
                try:
                    exc = cls(text) if cls is not KeyError else KeyError(text)
                except Exception:
                    exc = RemoteError(f"{type_name}: {text}")
            else:
                exc = RemoteError(f"{type_name}: {text}")
        if tb:
            try:
                exc.add_note(f"(in the other process: {type_name})\n{tb}")
            except Exception:
                pass
        return exc


class _NotImplementedInAdapter(Exception):
    pass


class Shipped:
    """A spec's module-level function sent by value (trusted to worker only): its source and the same-module
    classes, functions and plain constants it names (see :func:`_class_source`)."""

    def __init__(self, fn: Any) -> None:
        source = _class_source(fn)
        if source is None:
            raise TypeError(f"cannot ship {fn!r}: its source is not available")
        self.name = fn.__name__
        self.source, self.imports = source

    def __reduce__(self):  # pragma: no cover
        raise ProtocolError("shipped code pickled directly")


class _ShippedCode:
    """Shipped code rebuilt in the worker."""

    def __init__(self, fn: Any) -> None:
        if not callable(fn):
            raise ProtocolError("shipped code is not callable")
        self.fn = fn


def _detached(value: Any, depth: int = 0) -> Any:
    """A result of shipped code for the trusted side: containers rebuilt, tensors detached copies on the CPU."""
    if depth > 64:
        raise ValueError("result nested too deeply")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if type(value) in (list, tuple):
        return type(value)(_detached(v, depth + 1) for v in value)
    if type(value) is dict:
        return {k: _detached(v, depth + 1) for k, v in value.items()}
    return value


def _container_handles(value: Any, peer: Peer, by_handle: bool) -> Any:
    """Attribute / item / iteration results that are mutable containers stay behind (so ``opt.param_groups[0]
    ["lr"] = 0`` changes the worker's optimizer); call results cross by value."""
    if by_handle and isinstance(value, (list, dict)):
        return _Handle(value)
    if isinstance(value, types.GeneratorType) or hasattr(type(value), "__next__"):
        return _Handle(value)
    return value


class _Handle:
    """Marks an object to be sent as a handle even when it could go by value."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __reduce__(self):  # pragma: no cover
        raise ProtocolError("handle marker pickled directly")


def _describe(exc: BaseException) -> tuple:
    builtin_name = "Exception"
    if isinstance(exc, _NotImplementedInAdapter):
        builtin_name = "_NotImplementedInAdapter"
    elif isinstance(exc, _AttributeMissing):
        builtin_name = "_AttributeMissing"
    else:
        for cls in type(exc).__mro__:
            if getattr(builtins, cls.__name__, None) is cls:
                builtin_name = cls.__name__
                break
    try:
        message = str(exc)
    except Exception:
        message = "<unprintable>"
    tb = "".join(traceback.format_exception(exc)[-12:])
    return (_qualname(type(exc)), builtin_name, message[:MAX_TEXT], tb[-MAX_TEXT:])


class _AttributeMissing(AttributeError):
    pass


def _qualname(cls: type) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', getattr(cls, '__name__', '?'))}"


def _importable(cls: type) -> bool:
    mod = sys.modules.get(getattr(cls, "__module__", "") or "")
    if mod is None:
        return False
    obj = mod
    for part in getattr(cls, "__qualname__", "").split("."):
        obj = getattr(obj, part, None)
    return obj is cls


def _is_stream(obj: Any) -> bool:
    return isinstance(obj, io.IOBase) or (hasattr(obj, "read") and hasattr(obj, "fileno"))


def _class_source(cls: type) -> tuple[str, dict[str, str]] | None:
    """A spec's own module class as (source, {name: "module" or "module:attr"}): the class's source preceded by
    the sources of the same-module classes and functions it names (recursively) and its plain constants; the
    modules and importable names its module bound, to import in the worker."""
    import inspect
    import re
    import textwrap

    mod = sys.modules.get(cls.__module__)
    if mod is None:
        return None
    glob = vars(mod)
    order: list[str] = []
    seen: set[str] = set()
    consts: list[str] = []

    def visit(obj: Any) -> bool:
        try:
            src = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError):
            return False
        for ident in dict.fromkeys(re.findall(r"\b[A-Za-z_]\w*\b", src)):
            if ident in seen or ident == obj.__name__:
                continue
            value = glob.get(ident)
            if isinstance(value, (type, types.FunctionType)) and getattr(value, "__module__", None) == mod.__name__:
                seen.add(ident)
                visit(value)
            elif ident in glob and not ident.startswith("__") and _literal(value):
                seen.add(ident)
                consts.append(f"{ident} = {value!r}")
        order.append(src)
        return True

    seen.add(cls.__name__)
    if not visit(cls):
        return None
    imports: dict[str, str] = {}
    for alias, value in glob.items():
        if isinstance(value, types.ModuleType) and value.__name__.split(".")[0] in SHIPPED_IMPORTABLE:
            imports[alias] = value.__name__
        elif (alias not in seen and not alias.startswith("__") and isinstance(value, (type, types.FunctionType))) \
                or getattr(value, "__module__", None) in ("typing", "typing_extensions"):
            owner = getattr(value, "__module__", None) or ""
            if owner.split(".")[0] in SHIPPED_IMPORTABLE and _importable_name(owner, alias, value):
                imports[alias] = f"{owner}:{getattr(value, '__qualname__', alias)}"
    return "\n".join([*consts, *order]), imports


def _literal(value: Any, depth: int = 0) -> bool:
    """Plain data written as a Python literal that reads back equal (numbers, strings, None and tuples,
    lists, dicts of them): a spec's constant that may travel with its code."""
    t = type(value)
    if depth > 8:
        return False
    if value is None or t in (bool, int, str, bytes):
        return True
    if t is float:
        return value == value and abs(value) != float("inf")
    if t in (tuple, list):
        return len(value) <= 1000 and all(_literal(x, depth + 1) for x in value)
    if t is dict:
        return len(value) <= 1000 and all(_literal(k, depth + 1) and _literal(v, depth + 1)
                                          for k, v in value.items())
    return False


def _importable_name(module: str, alias: str, value: Any) -> bool:
    mod = sys.modules.get(module)
    if mod is None:
        return False
    obj = mod
    for part in str(getattr(value, "__qualname__", alias)).split("."):
        obj = getattr(obj, part, None)
    return obj is value


def _proxy_metaclass(bases: list[type]) -> type:
    metas = []
    for b in bases:
        if type(b) is not type and type(b) not in metas:
            metas.append(type(b))
    return type("RemoteMeta", (_RemoteMeta, *metas), {}) if metas else _RemoteMeta


class _RemoteMeta(type):
    """A proxy class: calling it builds an instance in the other process; its attributes are the remote
    class's."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if getattr(cls, "_lmfs_class_handle", False):
            return cls._lmfs_peer.request(cls._lmfs_hid, "call", *args, **kwargs)
        return super().__call__(*args, **kwargs)  # pragma: no cover

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_") or not getattr(cls, "_lmfs_class_handle", False):
            raise AttributeError(name)
        return cls._lmfs_peer.request(cls._lmfs_hid, "getattr", name)

    def __instancecheck__(cls, obj: Any) -> bool:
        return type.__instancecheck__(cls, obj)

    def __repr__(cls) -> str:
        return f"<remote class {cls.__name__}>"


_LOCAL = {"_lmfs_peer", "_lmfs_hid", "_lmfs_callable", "__class__", "__dict__", "__repr__", "__str__",
          "__eq__", "__ne__", "__hash__", "__reduce__", "__reduce_ex__", "__getstate__", "__init_subclass__",
          "__subclasshook__", "__weakref__", "__module__", "__doc__", "__dir__", "__format__", "__sizeof__",
          "__getattribute__", "__setattr__", "__delattr__", "__new__", "__init__", "__lt__", "__le__",
          "__gt__", "__ge__", "__bool__", "__len__", "__iter__", "__next__", "__getitem__", "__setitem__",
          "__delitem__", "__contains__", "__call__", "__enter__", "__exit__", "__deepcopy__", "__copy__"}


class RemoteObject:
    """A proxy: every public attribute is read from the object in the other process."""

    def __getattribute__(self, name: str) -> Any:
        if name in _LOCAL or name.startswith("_lmfs_") or (name.startswith("__") and name.endswith("__")):
            return object.__getattribute__(self, name)
        peer = object.__getattribute__(self, "_lmfs_peer")
        return peer.request(object.__getattribute__(self, "_lmfs_hid"), "getattr", name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_lmfs_"):
            object.__setattr__(self, name, value)
            return
        self._lmfs_peer.request(self._lmfs_hid, "setattr", name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._lmfs_peer.request(self._lmfs_hid, "call", *args, **kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self._lmfs_peer.request(self._lmfs_hid, "getitem", key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._lmfs_peer.request(self._lmfs_hid, "setitem", key, value)

    def __delitem__(self, key: Any) -> None:
        self._lmfs_peer.request(self._lmfs_hid, "delitem", key)

    def __len__(self) -> int:
        n = self._lmfs_peer.request(self._lmfs_hid, "len")
        if type(n) is not int:
            raise TypeError("len() of the remote object is not an int")
        return n

    def __bool__(self) -> bool:
        return self._lmfs_peer.request(self._lmfs_hid, "bool") is True

    def __contains__(self, item: Any) -> bool:
        return self._lmfs_peer.request(self._lmfs_hid, "contains", item) is True

    def __iter__(self) -> Any:
        return self._lmfs_peer.request(self._lmfs_hid, "iter")

    def __next__(self) -> Any:
        return self._lmfs_peer.request(self._lmfs_hid, "next")

    def __enter__(self) -> Any:
        return self._lmfs_peer.request(self._lmfs_hid, "enter")

    def __exit__(self, *exc: Any) -> Any:
        return self._lmfs_peer.request(self._lmfs_hid, "exit")

    def __eq__(self, other: Any) -> bool:
        return self is other

    def __ne__(self, other: Any) -> bool:
        return self is not other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<remote {type(self).__name__[6:] or 'object'}>"

    def __reduce__(self):
        raise TypeError(f"a remote object cannot be pickled ({type(self).__name__})")


class _RemoteTextFile(io.TextIOBase):
    """A text file of the other process (a spec's ``open(path)``) as a local text file: read, readline and
    iteration are requests."""

    def __init__(self, peer: Peer, hid: int) -> None:
        super().__init__()
        self._peer, self._hid = peer, hid

    def _call(self, name: str, *args: Any) -> Any:
        return self._peer.request(self._hid, "call_attr", name, *args)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        data = self._call("read", -1 if size is None else int(size))
        if not isinstance(data, str):
            raise TypeError("read() of the remote text file did not return str")
        return data

    def readline(self, size: int = -1) -> str:
        data = self._call("readline", int(size))
        if not isinstance(data, str):
            raise TypeError("readline() of the remote text file did not return str")
        return data

    def write(self, text: str) -> int:
        n = self._call("write", str(text))
        return int(n) if isinstance(n, int) else len(text)

    def close(self) -> None:  # the owner closes its file
        pass


def _proxied_handle(obj: Any, peer: Peer) -> int | None:
    """The other side's handle id when ``obj`` is one of ``peer``'s proxies (object, class or file)."""
    if isinstance(obj, (_RemoteFile, _RemoteTextFile)):
        return obj._hid if obj._peer is peer else None
    if isinstance(obj, RemoteObject) or (isinstance(obj, type) and issubclass(obj, RemoteObject)):
        try:
            owner = object.__getattribute__(obj, "_lmfs_peer") if not isinstance(obj, type) else obj._lmfs_peer
            hid = object.__getattribute__(obj, "_lmfs_hid") if not isinstance(obj, type) else obj._lmfs_hid
        except AttributeError:
            return None
        return hid if owner is peer else None
    return None


class _RemoteFile(io.RawIOBase):
    """A file object of the other process (e.g. a spec's ``io.BytesIO``) as a real local file object, so C
    code that reads or writes it (``torch.save`` / ``torch.load``) can."""

    def __init__(self, peer: Peer, hid: int) -> None:
        super().__init__()
        self._peer, self._hid = peer, hid

    def _call(self, name: str, *args: Any) -> Any:
        return self._peer.request(self._hid, "call_attr", name, *args)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._call("read", len(b))
        if not isinstance(data, bytes):
            raise TypeError("read() of the remote file did not return bytes")
        n = min(len(data), len(b))
        b[:n] = data[:n]
        return n

    def write(self, b: Any) -> int:
        n = self._call("write", bytes(b))
        return int(n) if isinstance(n, int) else len(b)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._call("seek", int(offset), int(whence)))

    def tell(self) -> int:
        return int(self._call("tell"))

    def flush(self) -> None:
        self._call("flush")

    def close(self) -> None:  # the owner closes its file
        pass


_BRIDGE = None


def _bridge_function():
    """The autograd node that stands for another process's graph: forward returns the values that crossed,
    backward asks the other side to run its part and returns the gradients of non-leaf inputs (leaf
    gradients arrive as ``.grad`` changes)."""
    global _BRIDGE
    if _BRIDGE is not None:
        return _BRIDGE
    torch = _torch()

    class Bridge(torch.autograd.Function):
        @staticmethod
        def forward(ctx, peer, gid, sids, data, saved, anchor, *inputs):
            ctx.peer, ctx.gid, ctx.sids = peer, gid, sids
            ctx.n = len(inputs)
            if saved:
                ctx.save_for_backward(*saved)
            return data.clone()

        @staticmethod
        def backward(ctx, grad):
            results = ctx.peer.request(0, "backward", ctx.gid, grad)
            by_sid = {}
            for item in results if isinstance(results, list) else []:
                if isinstance(item, tuple) and len(item) == 2:
                    by_sid[item[0]] = item[1]
            grads = []
            for s in ctx.sids:
                g = by_sid.get(s)
                grads.append(g if g is None or isinstance(g, torch.Tensor) else None)
            return (None, None, None, None, None, None, *grads)

    _BRIDGE = Bridge
    return Bridge


# ----------------------------------------------------------------------------------------------- the worker


def load_adapter(spec: str, paths: list[str]) -> Any:
    import importlib
    import importlib.util

    for p in reversed(paths):
        if p not in sys.path:
            sys.path.insert(0, p)
    if spec.endswith(".py"):
        mod_spec = importlib.util.spec_from_file_location("_lmfs_submission", spec)
        if mod_spec is None or mod_spec.loader is None:
            raise ImportError(f"cannot load adapter file {spec}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules["_lmfs_submission"] = module
        mod_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


class AdapterRoot:
    """Handle 0 in a host: the adapter module's attributes; a missing one is told apart from other errors.
    Shipped spec code gets it as its ``adapter``."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def has(self, name: str) -> bool:
        return hasattr(self.module, name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(self.module, name)
        except AttributeError:
            raise _AttributeMissing(f"adapter does not define {name}()") from None


def _host(conn: socket.socket, request: dict) -> None:
    """A forked host: its own session, a memory cap, the adapter imported, requests served until EOF."""
    os.setsid()
    mem = request.get("memory_mb")
    if mem:
        import resource

        limit = int(mem) * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    torch = sys.modules.get("torch")
    if torch is not None and request.get("threads"):
        torch.set_num_threads(int(request["threads"]))
    world = request.get("world")
    if world:
        import datetime

        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{int(request['port'])}",
                                rank=int(request["rank"]), world_size=int(world),
                                timeout=datetime.timedelta(seconds=float(request.get("timeout", 120))))
    peer = Peer(conn, trusted=False)
    try:
        module = load_adapter(str(request["adapter"]), list(request.get("paths") or []))
        peer.root = AdapterRoot(module)
        send_frame(conn, peer._dumps(("ready", os.getpid(), None)))
    except BaseException as exc:
        send_frame(conn, peer._dumps(("failed", os.getpid(), _describe(exc))))
        os._exit(3)
    peer.serve_forever()
    os._exit(0)


def _parent_is_me(pid: int) -> bool:
    try:
        return _parent(pid) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def _ours(pid: int, me: int, tag: str) -> bool:
    """Outside a PID namespace: a descendant of this zygote, or a process that carries its tag."""
    p = pid
    for _ in range(64):
        try:
            p = _parent(p)
        except (OSError, ValueError, IndexError):
            break
        if p == me:
            return True
        if p <= 1:
            break
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return f"LMFS_WORKER_TAG={tag}".encode() in fh.read()
    except OSError:
        return False


def _reap(keep: set[int], sandboxed: bool = True, tag: str = "") -> int:
    """Kill every process of this PID namespace but ourselves, our ancestors and ``keep`` (outside a
    namespace: only our descendants and the processes carrying our tag)."""
    me = os.getpid()
    ancestors = {me}
    pid = me
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        ancestors.add(pid)
    killed = 0
    for _ in range(3):
        victims = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) not in ancestors | keep]
        if not sandboxed:
            victims = [v for v in victims if _ours(v, me, tag)]
        if not victims:
            break
        for v in victims:
            try:
                os.kill(v, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        _collect()
    return killed


_EXITS: dict[int, int] = {}


def _collect() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _EXITS[pid] = status


def _in_own_pid_namespace() -> bool:
    try:
        with open("/proc/1/cmdline", "rb") as fh:
            return b"bwrap" in fh.read() and os.getpid() < 100
    except OSError:
        return False


def serve(channel: str, mode: str = "sandboxed") -> None:
    """The zygote: torch imported once; one forked host per connection; control requests (reap, status)."""
    sandboxed = mode == "sandboxed" and _in_own_pid_namespace()
    tag = os.urandom(8).hex()
    os.environ["LMFS_WORKER_TAG"] = tag
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        pass
    path = os.path.join(channel, "ctl.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(64)
    ports: dict[str, int] = {}
    print("lmfs-worker-ready", flush=True)
    peer = Peer(socket.socket(), trusted=False)  # codec only
    while True:
        conn, _ = lsock.accept()
        _collect()
        try:
            request = peer._loads(recv_frame(conn))
        except Exception:
            conn.close()
            continue
        if not isinstance(request, dict):
            conn.close()
            continue
        op = request.get("op")
        if op == "host":
            group = request.get("group")
            if request.get("world"):
                if group not in ports:
                    s = socket.socket()
                    s.bind(("127.0.0.1", 0))
                    ports[group] = s.getsockname()[1]
                    s.close()
                request["port"] = ports[group]
            pid = os.fork()
            if pid == 0:
                lsock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                try:
                    _host(conn, request)
                except BaseException:
                    traceback.print_exc()
                    sys.stderr.flush()
                finally:
                    os._exit(4)
            conn.close()
            continue
        if op == "reap":
            n = _reap({int(p) for p in request.get("keep") or []}, sandboxed, tag)
            _collect()
            send_frame(conn, peer._dumps(("ok", n)))
        elif op == "status":
            _collect()
            pid = int(request.get("pid") or 0)
            status = _EXITS.get(pid)
            code = None if status is None else (os.waitstatus_to_exitcode(status))
            send_frame(conn, peer._dumps(("ok", code)))
        elif op == "kill":  # hosts of a colocated run, each with its process group
            n = 0
            for pid in request.get("pids") or []:
                if isinstance(pid, int) and pid > 1 and pid != os.getpid() and _parent_is_me(pid):
                    for kill in (os.killpg, os.kill):
                        try:
                            kill(pid, signal.SIGKILL)
                            n += 1
                        except OSError:
                            pass
            _collect()
            send_frame(conn, peer._dumps(("ok", n)))
        elif op == "ping":
            send_frame(conn, peer._dumps(("ok", os.getpid())))
        conn.close()


def check(spec: str, paths: list[str]) -> int:
    try:
        load_adapter(spec, paths)
    except BaseException as exc:
        print(f"{type(exc).__name__}: {exc}"[:MAX_TEXT], file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "sandboxed")
    elif len(sys.argv) >= 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3:]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
