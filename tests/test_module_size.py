"""One module, one idea: a module past about 400 lines says in its docstring why it is not
split (STYLE.md; issue 14's "Done when")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TCHAT = Path(__file__).resolve().parent.parent / "tchat"
LIMIT = 400
MODULES = sorted(TCHAT.rglob("*.py"))


def test_the_walk_finds_the_package() -> None:
    assert len(MODULES) > 50
    assert any(len(p.read_text().splitlines()) > LIMIT for p in MODULES)  # checked below


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(TCHAT)))
def test_a_long_module_says_why(path: Path) -> None:
    source = path.read_text()
    if len(source.splitlines()) <= LIMIT:
        return
    docstring = ast.get_docstring(ast.parse(source)) or ""
    assert f"Longer than {LIMIT} lines" in docstring, (
        f"{path.relative_to(TCHAT)} has {len(source.splitlines())} lines: split it, or say "
        f"why not in its docstring ('Longer than {LIMIT} lines: ...')"
    )
