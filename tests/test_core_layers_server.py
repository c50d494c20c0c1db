"""tchat/core's server side imports in layers: no circle among its modules.

Walks every module's syntax tree, function-level and TYPE_CHECKING imports included: an
import hidden in a function or kept for the type checker is still a dependency. Restricted
to the server's files (the client's files have a test of their own).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "tchat" / "core"
SERVER_FILES = (
    "server",
    "roles",
    "phases",
    "server_context",
    "server_replies",
    "candidacy",
    "following",
    "leader",
    "desk",
    "stream",
    "election",
    "fold",
    "log",
    "log_fold",
    "archive",
    "effects",
)

# Circles still to break (each through a back-reference typed by the concrete class); the
# test fails when one appears that is not listed here, or when a listed one is gone (then
# strike it out).
KNOWN_CIRCLES: set[tuple[str, ...]] = set()


def imports_in(source: str, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def server_modules() -> dict[str, Path]:
    return {
        f"tchat.core.{name}": CORE / f"{name}.py"
        for name in SERVER_FILES
        if (CORE / f"{name}.py").exists()
    }


def circles_in(graph: dict[str, list[str]]) -> set[tuple[str, ...]]:
    """Each circle once, rotated to start at its smallest module."""
    found: set[tuple[str, ...]] = set()

    def walk(path: list[str]) -> None:
        for dep in graph[path[-1]]:
            if dep == path[0]:
                found.add(tuple(path))
            elif dep > path[0] and dep not in path:
                walk([*path, dep])

    for start in sorted(graph):
        walk([start])
    return found


def test_the_walker_sees_hidden_and_relative_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import server\n"
        "def f():\n    from tchat.core.leader import Leadership\n"
    )
    found = imports_in(source, "tchat.core")
    assert {"tchat.core.server", "tchat.core.leader"} <= found


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}
    assert circles_in(graph) == {("a", "b", "c")}


def test_no_import_circle_among_the_server_files() -> None:
    modules = server_modules()
    graph = {
        name: sorted(m for m in imports_in(path.read_text(), "tchat.core") if m in modules)
        for name, path in modules.items()
    }
    for name in graph:
        graph[name] = [m for m in graph[name] if m != name]
    found = {tuple(m.rsplit(".", 1)[1] for m in c) for c in circles_in(graph)}
    assert found - KNOWN_CIRCLES == set(), "new import circles:\n" + "\n".join(
        " -> ".join(c) for c in sorted(found - KNOWN_CIRCLES)
    )
    assert KNOWN_CIRCLES - found == set(), "gone (strike them out of KNOWN_CIRCLES)"


def test_no_server_file_reaches_into_another_objects_private_fields() -> None:
    """What ``ruff check --select SLF001`` counts: ``other._field`` (self's and cls's own
    underscores are fine). A helper owns its state or asks through a public method."""
    offenders = []
    for name, path in server_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or (attr.startswith("__") and attr.endswith("__")):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if isinstance(node.value, ast.Call):
                continue  # super()._x and the like
            offenders.append(f"{name}:{node.lineno} .{attr}")
    assert offenders == [], "\n".join(offenders)
