"""tchat/core's client side imports in layers: no module of it is on an import circle.

The walker (tests/test_ui_layers.py) counts function-level and TYPE_CHECKING imports too:
the inbox reaches its node through the InboxHost Protocol, not by importing the node.
"""

from __future__ import annotations

from pathlib import Path

from test_ui_layers import ROOT, imports_of, module_name

CORE = ROOT / "tchat" / "core"
CLIENT_SIDE = {
    f"tchat.core.{name}"
    for name in ("client", "client_states", "inbox", "delivery", "vclock", "schema")
}


def core_graph() -> dict[str, set[str]]:
    modules: dict[str, Path] = {module_name(p): p for p in sorted(CORE.glob("*.py"))}
    return {
        name: {dep for _, dep in imports_of(path) if dep in modules and dep != name}
        for name, path in modules.items()
    }


def circle_through(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path of imports from ``start`` back to itself, or None."""
    stack: list[tuple[str, list[str]]] = [(dep, [start, dep]) for dep in sorted(graph[start])]
    seen: set[str] = set()
    while stack:
        name, path = stack.pop()
        if name == start:
            return path
        if name in seen:
            continue
        seen.add(name)
        stack.extend((dep, [*path, dep]) for dep in sorted(graph[name]))
    return None


def test_the_circle_finder_finds_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circle_through("a", graph) == ["a", "b", "c", "a"]
    assert circle_through("d", graph) is None


def test_the_client_side_modules_exist() -> None:
    assert set(core_graph()) >= CLIENT_SIDE


def test_no_client_side_module_is_on_an_import_circle() -> None:
    graph = core_graph()
    circles = {name: circle_through(name, graph) for name in sorted(CLIENT_SIDE)}
    assert {name: path for name, path in circles.items() if path} == {}
