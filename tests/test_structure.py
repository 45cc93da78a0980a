"""The shape of the package: no import cycles among lmfs's packages, and the harness stays on top.

A static scan (``ast``) of every ``import`` / ``from … import`` statement under ``lmfs/``, function-local ones
included, so an import hidden inside a function to dodge a cycle still counts. Nodes are lmfs's top-level
packages and modules (``lmfs.nn``, ``lmfs.train``, ``lmfs.atomic``, …); ``lmfs/__init__.py`` and
``lmfs/__main__.py`` are the entry points, not nodes.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lmfs"
ENTRY_POINTS = {"lmfs", "lmfs.__main__"}
#: packages allowed to import lmfs.harness (the harness itself and the command line above it)
HARNESS_USERS = {"lmfs.harness", "lmfs.cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _node(module: str) -> str:
    """``lmfs.nn.config`` -> ``lmfs.nn``; ``lmfs`` -> ``lmfs``."""
    return ".".join(module.split(".")[:2])


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the lmfs modules ``path`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # ``from lmfs import nn`` imports the subpackage lmfs.nn
            if target == "lmfs":
                found.update(f"lmfs.{alias.name}" for alias in node.names)
    return {m for m in found if m == "lmfs" or m.startswith("lmfs.")}


def package_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """node -> the other nodes it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path)
        if module in ENTRY_POINTS:
            continue
        src = _node(module)
        deps = graph.setdefault(src, set())
        for target in imported_modules(path):
            dst = _node(target)
            if dst != src and dst not in ENTRY_POINTS:
                deps.add(dst)
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, …, a]``, or None when it is acyclic (iterative DFS, three colours)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {n: WHITE for n in graph}
    for deps in graph.values():
        for d in deps:
            colour.setdefault(d, WHITE)
    for start in sorted(colour):
        if colour[start] != WHITE:
            continue
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph.get(start, ())))]
        path = [start]
        colour[start] = GREY
        while stack:
            node, todo = stack[-1]
            if not todo:
                colour[node] = BLACK
                stack.pop()
                path.pop()
                continue
            nxt = todo.pop(0)
            if colour[nxt] == GREY:
                return [*path[path.index(nxt) :], nxt]
            if colour[nxt] == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                stack.append((nxt, sorted(graph.get(nxt, ()))))
    return None


# ------------------------------------------------------------------------------------------ the finder itself


@pytest.mark.parametrize(
    ("graph", "cyclic"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, False),  # a diamond is not a cycle
        ({"a": {"b"}, "b": {"a"}}, True),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"x": set(), "a": {"b"}, "b": {"c"}, "c": {"b"}}, True),  # a cycle not through the first node
        ({"a": {"a"}}, True),
    ],
)
def test_cycle_finder(graph: dict[str, set[str]], cyclic: bool) -> None:
    cycle = find_cycle(graph)
    assert (cycle is not None) == cyclic
    if cycle:
        assert cycle[0] == cycle[-1]
        assert all(b in graph[a] for a, b in itertools.pairwise(cycle))


def test_scan_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "lmfs"
    (pkg / "one").mkdir(parents=True)
    (pkg / "two").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "one" / "__init__.py").write_text("from .mod import f\n")
    (pkg / "one" / "mod.py").write_text("def f():\n    from lmfs.two import g\n    return g\n")
    (pkg / "two" / "__init__.py").write_text("import lmfs.one.mod\n\ndef g():\n    pass\n")
    global ROOT
    saved, ROOT = ROOT, pkg
    try:
        graph = package_graph(pkg)
    finally:
        ROOT = saved
    assert graph == {"lmfs.one": {"lmfs.two"}, "lmfs.two": {"lmfs.one"}}
    assert find_cycle(graph) in (
        ["lmfs.one", "lmfs.two", "lmfs.one"],
        ["lmfs.two", "lmfs.one", "lmfs.two"],
    )


# ------------------------------------------------------------------------------------------------- lmfs


def test_no_import_cycles_among_packages() -> None:
    graph = package_graph()
    assert {"lmfs.nn", "lmfs.train", "lmfs.generate", "lmfs.scaling"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle among lmfs's packages: " + " -> ".join(cycle or [])


def test_only_the_harness_and_the_cli_import_the_harness() -> None:
    graph = package_graph()
    users = sorted(src for src, deps in graph.items() if "lmfs.harness" in deps and src not in HARNESS_USERS)
    assert not users, f"{users} import lmfs.harness; only {sorted(HARNESS_USERS)} may"
