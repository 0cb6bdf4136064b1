"""The import graph of ``tooti`` points one way: no cycles, no upward imports.

Layers, top to bottom (a module may import its own layer and any layer below, never one above):

    cli  ->  node / gateway  ->  trust / accounting  ->  p2p  ->  wire / backends / routing / config
    (and the contracts they share)  ->  leaves (errors, markers, small helpers)

What counts as an import: every ``import`` and ``from … import`` of a ``tooti`` module anywhere in a
file — at module level, inside functions (lazy imports run too), and under ``if TYPE_CHECKING:``.
``TYPE_CHECKING`` imports count for the layers because a lower module that names a higher module's
types still depends on it (it cannot be read, typed or moved without it); they count for cycles
because a cycle hidden under ``TYPE_CHECKING`` is the same design knot (``p2p.runtime`` <->
``p2p.peer_keeper`` was one), even though it cannot fail at import time.

Checked here, on the sources parsed with :mod:`ast` (no imports run; well under a second):

- no cycle between modules;
- no cycle between folders (the packages and top-level modules right under ``tooti``);
- no import from a lower layer into a higher one;
- every folder is placed in a layer (a new one must be placed on purpose);
- every allowed exception still occurs (a fixed one must leave the list).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__", "cli"),
    ("node", "gateway", "testing"),
    ("trust", "accounting"),
    ("p2p",),
    # The bottom layer and the contracts its parts and everything above share. ``tooti`` is the
    # package's own ``__init__`` (the public API for plugin authors).
    ("wire", "backends", "routing", "config", "network", "network_capabilities", "plugins", "hookspecs", "tooti"),
    ("errors", "_aio", "_version", "api_key_format", "plugin_markers", "serving_gc"),
)
"""Folder names under ``tooti``, highest layer first; imports go to the same or a later entry only."""

ALLOWED: dict[tuple[str, str], str] = {}
"""Known upward imports (source module, imported module), each to be removed; none may be added."""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    type_checking: bool

    def __str__(self) -> str:
        where = " (TYPE_CHECKING)" if self.type_checking else ""
        return f"{self.source}:{self.line} -> {self.target}{where}"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the ``tooti`` package under ``root``."""
    found: dict[str, Path] = {}
    for path in sorted((root / "tooti").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                inside.update(id(n) for n in ast.walk(child))
    return inside


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module ``name`` refers to: itself, else its nearest enclosing package that exists."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_edges(root: Path) -> list[Edge]:
    """Every import of one ``tooti`` module by another, wherever it is written."""
    known = modules(root)
    edges: list[Edge] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        checking = _type_checking_nodes(tree)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*kept, *([node.module] if node.module else [])])
                # ``from tooti.p2p import dht`` imports the module tooti.p2p.dht; ``from tooti import
                # __version__`` imports the package itself.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for target in targets:
                if target.split(".")[0] != "tooti":
                    continue
                resolved = _resolve(target, known)
                if resolved is not None and resolved != module:
                    edges.append(Edge(module, resolved, node.lineno, id(node) in checking))
    return edges


def folder(module: str) -> str:
    """``tooti.p2p.runtime`` -> ``p2p``; ``tooti.errors`` -> ``errors``; ``tooti`` -> ``tooti``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


@dataclass
class Report:
    module_cycles: list[list[str]]
    folder_cycles: list[list[str]]
    upward: list[Edge]
    unplaced: list[str]
    stale_exceptions: list[tuple[str, str]]


def check(root: Path, layers: tuple[tuple[str, ...], ...], allowed: dict[tuple[str, str], str]) -> Report:
    """Everything this module's docstring promises, for the sources under ``root``."""
    rank = {name: i for i, names in enumerate(layers) for name in names}
    edges = import_edges(root)
    seen_allowed = {(e.source, e.target) for e in edges} & set(allowed)
    counted = [e for e in edges if (e.source, e.target) not in allowed]
    module_graph: dict[str, set[str]] = defaultdict(set)
    folder_graph: dict[str, set[str]] = defaultdict(set)
    for e in counted:
        module_graph[e.source].add(e.target)
        if folder(e.source) != folder(e.target):
            folder_graph[folder(e.source)].add(folder(e.target))
    unplaced = sorted({folder(m) for m in modules(root)} - set(rank))
    upward = [
        e
        for e in counted
        if folder(e.source) in rank and folder(e.target) in rank and rank[folder(e.target)] < rank[folder(e.source)]
    ]
    return Report(
        module_cycles=cycles(module_graph),
        folder_cycles=cycles(folder_graph),
        upward=upward,
        unplaced=unplaced,
        stale_exceptions=sorted(set(allowed) - seen_allowed),
    )


@pytest.fixture(scope="module")
def report() -> Report:
    return check(SRC, LAYERS, ALLOWED)


def test_no_module_level_import_cycle(report: Report) -> None:
    assert report.module_cycles == []


def test_no_folder_level_import_cycle(report: Report) -> None:
    assert report.folder_cycles == []


def test_no_upward_import(report: Report) -> None:
    assert [str(e) for e in report.upward] == []


def test_every_folder_has_a_layer(report: Report) -> None:
    assert report.unplaced == [], "place each new folder in LAYERS on purpose"


def test_every_allowed_exception_still_exists(report: Report) -> None:
    assert report.stale_exceptions == [], "remove fixed exceptions from ALLOWED"


# -- the checker itself finds what it must (a check that cannot fail proves nothing) ---------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "tooti" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


TINY_LAYERS = (("top",), ("low",), ("tooti",))


def test_checker_finds_an_upward_import_even_under_type_checking(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "top/__init__.py": "",
            "top/a.py": "from tooti.low import b\n",
            "low/__init__.py": "",
            "low/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tooti.top.a import X\n",
        },
    )
    report = check(root, TINY_LAYERS, {})
    assert [(e.source, e.target, e.type_checking) for e in report.upward] == [("tooti.low.b", "tooti.top.a", True)]
    assert report.module_cycles == [["tooti.low.b", "tooti.top.a"]]
    assert report.folder_cycles == [["low", "top"]]
    allowed = check(root, TINY_LAYERS, {("tooti.low.b", "tooti.top.a"): "known"})
    assert allowed.upward == []
    assert allowed.module_cycles == []
    assert allowed.folder_cycles == []


def test_checker_finds_lazy_relative_imports_cycles_and_unplaced_folders(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/c.py": "def f():\n    from . import d\n",
            "low/d.py": "import tooti.low.c\n",
            "odd.py": "",
        },
    )
    report = check(root, TINY_LAYERS, {("tooti.x", "tooti.y"): "gone"})
    assert report.module_cycles == [["tooti.low.c", "tooti.low.d"]]
    assert report.folder_cycles == []  # one folder
    assert report.unplaced == ["odd"]
    assert report.stale_exceptions == [("tooti.x", "tooti.y")]
