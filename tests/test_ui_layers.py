"""tchat/ui's imports: never the runtime (its service comes through a Protocol), no circles.

Walks every module's syntax tree, function-level and TYPE_CHECKING imports included: an
import hidden in a function is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UI = ROOT / "tchat" / "ui"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in ``path``, at any depth, relative ones resolved."""
    return imports_in(path.read_text(), module_name(path).rsplit(".", 1)[0])


def imports_in(source: str, package: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            # ``from tchat.ui.screens import client`` imports the submodule
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def ui_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(UI.rglob("*.py"))}


def test_the_walker_sees_hidden_and_relative_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import client\n"
        "def f():\n    from tchat.runtime.client_service import ClientService\n"
    )
    found = {name for _, name in imports_in(source, "tchat.ui.screens")}
    assert "tchat.runtime.client_service" in found
    assert "tchat.ui.screens.client" in found


def test_ui_never_imports_the_runtime() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in ui_modules().values()
        for line, name in imports_of(path)
        if name == "tchat.runtime" or name.startswith("tchat.runtime.")
    ]
    assert not offenders, "tchat/ui must get its services through Protocols:\n" + "\n".join(
        offenders
    )


def test_no_import_circle_inside_ui() -> None:
    modules = ui_modules()
    graph = {
        name: sorted({m for _, m in imports_of(path) if m in modules and m != name})
        for name, path in modules.items()
    }
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in graph[name]:
            if state.get(dep) == 1:
                circles.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not circles, "import circles in tchat/ui:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_ui_reads_no_service_node() -> None:
    """Screens and the app see a session only through the service's status snapshot; the
    demo's fake services own a fake node of their own and are exempt."""
    offenders = []
    for name, path in ui_modules().items():
        if name.startswith("tchat.ui.demo"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr == "node"):
                continue
            owner = node.value
            owner_name = (
                owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            )
            if owner_name == "service":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, "the UI reads service.node:\n" + "\n".join(offenders)
