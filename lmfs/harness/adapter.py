"""Loading an adapter module: a file path or an importable module name."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

DEFAULT_ADAPTER = "lmfs.adapters"


class AdapterLoadError(RuntimeError):
    """The adapter could not be found or imported."""


class AdapterMissing(NotImplementedError):
    """The adapter does not define a function that a spec needs (scored as zero)."""


def adapter_name(spec: str) -> str:
    """A short, file-system-safe name for an adapter spec (used for reports/grade/<name>.json)."""
    p = Path(spec)
    if spec.endswith(".py") or p.exists():
        parts = [x for x in p.resolve().with_suffix("").parts[-3:] if x not in ("/", "")]
        name = "-".join(parts)
    else:
        name = spec
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


def load_adapter(spec: str) -> ModuleType:
    """Import ``spec``: a ``.py`` file (its folder and that folder's parent go on sys.path so it can
    import its own implementation, as a CS336 ``tests/adapters.py`` does) or a module name."""
    path = Path(spec)
    if spec.endswith(".py") or path.suffix or path.exists() or "/" in spec:
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
        except Exception as exc:  # noqa: BLE001 - report any import failure clearly
            sys.modules.pop(mod_name, None)
            raise AdapterLoadError(f"adapter {path} failed to import: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        raise AdapterLoadError(f"adapter module {spec!r} not found ({exc}); pass a .py path or an importable name") from exc
    except Exception as exc:  # noqa: BLE001
        raise AdapterLoadError(f"adapter module {spec!r} failed to import: {type(exc).__name__}: {exc}") from exc


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
        if name.startswith("_"):
            raise AttributeError(name)
        fn = getattr(self._module, name, None)
        if fn is None:
            raise AdapterMissing(f"adapter {self._spec} does not define {name}()")
        return fn

    def __repr__(self) -> str:
        return f"Adapter({self._spec!r})"
