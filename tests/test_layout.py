"""The shape of the package: no import cycle inside ``tracker/``."""

from __future__ import annotations

import ast
import configparser
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracker

TRACKER_DIR = Path(tracker.__file__).parent  # the tracker/ folder (online/, cli/ are beside it)


def module_name(path: Path, root: Path = TRACKER_DIR) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_in(
    body: list[ast.stmt], deferred: bool = False
) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements Python executes when the module is imported: the module body and
    the blocks in it (if/try/with, class bodies), not ``if TYPE_CHECKING:`` (its ``else`` does
    run); with ``deferred``, also those in function bodies (run at the first call)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from imports_in(node.body, deferred)
            yield from imports_in(node.orelse, deferred)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from imports_in(block, deferred)
            for handler in node.handlers:
                yield from imports_in(handler.body, deferred)
        elif isinstance(node, ast.For | ast.While):
            yield from imports_in(node.body + node.orelse, deferred)
        elif isinstance(node, ast.With | ast.ClassDef) or (
            deferred and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ):
            yield from imports_in(node.body, deferred)


def import_graph(root: Path = TRACKER_DIR, deferred: bool = False) -> dict[str, set[str]]:
    """Module → the modules of ``root``'s package it imports at import time (with ``deferred``,
    also inside functions). ``from p import name`` points at the submodule ``p.name`` when
    there is one, else at ``p`` itself."""
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        for node in imports_in(tree.body, deferred):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    package = name.split(".")
                    package = package if is_package else package[:-1]
                    anchor = ".".join(package[: len(package) - node.level + 1])
                    base = f"{anchor}.{base}" if base else anchor
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                    for alias in node.names
                ]
            edges.update(t for t in targets if t in paths and t != name)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), each
    written as a path that returns to its first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

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
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(sorted(c), graph) for c in components]


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the component's first module back to itself (breadth first)."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def describe(cycles: list[list[str]]) -> str:
    return "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cycle_finder_names_a_cycle():
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"e"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_tracker():
    """Nothing in tracker/ imports, at import time, a module that imports it back (the
    outcome would depend on which of the two is imported first)."""
    graph = import_graph()
    assert "tracker.manager" in graph and "tracker.backends.sql.store" in graph
    cycles = find_cycles(graph)
    assert not cycles, f"import cycles inside tracker/: {describe(cycles)}"


def test_no_hidden_import_cycle_inside_tracker():
    """Not even through an import inside a function (issue 10: no cycle, hidden or not)."""
    cycles = find_cycles(import_graph(deferred=True))
    assert not cycles, (
        f"import cycles inside tracker/, counting deferred imports: {describe(cycles)}"
    )


@pytest.mark.slow
def test_the_wheel_installs_only_tracker(tmp_path):
    """``pip install .`` puts ``tracker/`` and its dist-info in site-packages, nothing else
    (online/ and cli/ land inside it), and the ``tracker`` command is the CLI."""
    root = TRACKER_DIR.parent
    if not (root / "pyproject.toml").is_file():
        pytest.skip("needs the source tree (tracker/ is installed, not editable)")
    # A clean copy: setuptools reuses a build/ folder, which may hold modules since removed.
    source = tmp_path / "src"
    junk = (
        ".git",
        ".ci",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        ".*cache",
        ".tracker",
        ".venv",
    )
    shutil.copytree(root, source, ignore=shutil.ignore_patterns(*junk))
    out = tmp_path / "wheel"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(out)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = out.glob("qlib_tracker-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        top = {name.split("/", 1)[0] for name in names}
        (dist_info,) = (t for t in top if t.endswith(".dist-info"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert top == {"tracker", dist_info}
    assert re.fullmatch(r"qlib_tracker-[^-]+\.dist-info", dist_info)
    for module in (
        "tracker/online/workflow/task/manage.py",
        "tracker/cli/main.py",
        "tracker/py.typed",
    ):
        assert module in names
    scripts = configparser.ConfigParser()
    scripts.read_string(entry_points)
    assert dict(scripts["console_scripts"]) == {"tracker": "tracker.cli.main:main"}
