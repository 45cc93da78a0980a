"""Loading an adapter module: a file path or an importable module name."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

DEFAULT_ADAPTER = "lmfs.adapters"


class AdapterLoadError(RuntimeError):
    """The adapter could not be found or imported."""


class AdapterMissing(BaseException):
    """The adapter does not define a function that a spec needs (scored as zero).

    A ``BaseException`` on purpose: a spec's ``pytest.raises(RuntimeError)`` (or ``Exception``) must not
    mistake "not written" for "raised the expected error"."""


class AdapterUnavailable(Exception):
    """What :class:`AdapterMissing` / :class:`AdapterNotImplemented` become outside a test body (e.g. in a
    fixture): pytest's fixture cache expects ``Exception``s. ``kind`` is the original class (the grader scores
    by it); the message starts with its name."""

    def __init__(self, message: str, kind: type[BaseException] | None = None) -> None:
        super().__init__(message)
        self.kind = kind


class _State:
    in_test_body = False  # set by the pytest plugin around each test's call phase


STATE = _State()


def _unavailable(kind: type[BaseException], message: str) -> BaseException:
    return kind(message) if STATE.in_test_body else AdapterUnavailable(f"{kind.__name__}: {message}", kind)


class AdapterNotImplemented(BaseException):
    """An adapter function raised ``NotImplementedError`` (scored as zero; a BaseException for the same reason)."""


def looks_like_path(spec: str) -> bool:
    """``adapters.py``, ``tests/adapters.py`` or an existing file are paths; ``lmfs.adapters`` is a module."""
    return spec.endswith(".py") or "/" in spec or os.sep in spec or Path(spec).is_file()


def adapter_name(spec: str) -> str:
    """A short, file-system-safe name for an adapter spec (used for reports/grade/<name>.json)."""
    p = Path(spec)
    if looks_like_path(spec):
        parts = [x for x in p.resolve().with_suffix("").parts[-3:] if x not in ("/", "")]
        name = "-".join(parts)
    else:
        name = spec
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


def load_adapter(spec: str) -> ModuleType:
    """Import ``spec``: a ``.py`` file (its folder and that folder's parent go on sys.path so it can
    import its own implementation, as a CS336 ``tests/adapters.py`` does) or a module name."""
    path = Path(spec)
    if looks_like_path(spec):
        if not path.is_file():
            raise AdapterLoadError(f"adapter file not found: {spec} (pass a .py file or an importable module name)")
        path = path.resolve()
        for extra in (path.parent.parent, path.parent):
            if str(extra) not in sys.path:
                sys.path.insert(0, str(extra))
        mod_name = f"_lmfs_adapter_{adapter_name(spec)}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        if module_spec is None or module_spec.loader is None:
            raise AdapterLoadError(f"cannot load adapter file {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise AdapterLoadError(f"adapter {path} failed to import: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        raise AdapterLoadError(f"adapter module {spec!r} not found ({exc}); pass a .py path or an importable name") from exc
    except Exception as exc:
        raise AdapterLoadError(f"adapter module {spec!r} failed to import: {type(exc).__name__}: {exc}") from exc


def _guard_not_implemented(fn: Any, name: str) -> Any:
    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NotImplementedError as exc:
            raise _unavailable(AdapterNotImplemented, f"NotImplementedError in adapter {name}(): {exc}") from exc

    return call


class Adapter:
    """A view of an adapter module: ``adapter.run_linear(...)``; a function the module lacks raises
    :class:`AdapterMissing` when a spec asks for it, so only that spec scores zero."""

    def __init__(self, module: ModuleType, spec: str) -> None:
        self._module = module
        self._spec = spec

    @property
    def module(self) -> ModuleType:
        return self._module

    def has(self, name: str) -> bool:
        return callable(getattr(self._module, name, None))

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("_", "hypothesis_", "pytest")):
            # introspection by tools (hypothesis's mock check, pytest's fixture scan) is not a spec asking
            raise AttributeError(name)
        fn = getattr(self._module, name, None)
        if fn is None:
            raise _unavailable(AdapterMissing, f"adapter {self._spec} does not define {name}()")
        if not callable(fn) or isinstance(fn, type):
            return fn
        return _guard_not_implemented(fn, name)

    def __repr__(self) -> str:
        return f"Adapter({self._spec!r})"

    def __reduce__(self) -> tuple:
        """Pickled as its spec: a spawned process (e.g. a rank of a distributed spec) loads the adapter again."""
        return (_reload_adapter, (self._spec,))


def _reload_adapter(spec: str) -> Adapter:
    return Adapter(load_adapter(spec), spec)
