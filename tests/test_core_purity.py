"""The sans-IO core imports no I/O, clock, threading, storage or UI module (checked per module)."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tchat.core

FORBIDDEN = ("asyncio", "socket", "selectors", "sqlite3", "textual", "uvloop", "threading")
# Never imported by a core module's own source, even if something allowed loads them.
FORBIDDEN_DIRECT = (*FORBIDDEN, "time", "tchat.runtime", "tchat.ui", "tchat.sim")
ROOT = Path(tchat.__file__).resolve().parent.parent
# walk_packages finds modules added later too, so a new core module is covered unasked.
MODULES = sorted(
    info.name for info in pkgutil.walk_packages(tchat.core.__path__, prefix="tchat.core.")
)

# The stdlib ``logging`` (which every module uses, per the style guide) imports threading
# for its locks; that is allowed, so the probe subtracts what logging loads on its own.
PROBE = """
import json, sys
sys.path.insert(0, {root!r})
forbidden = {forbidden!r}
def loaded():
    return {{m for m in sys.modules if m.split(".")[0] in forbidden}}
import logging
allowed = loaded()
import {module}
print(json.dumps(sorted(loaded() - allowed)))
"""


def _loaded_by(module: str, forbidden: tuple[str, ...] = FORBIDDEN) -> list[str]:
    """Forbidden modules, beyond logging's own, present after importing ``module`` afresh."""
    code = PROBE.format(root=str(ROOT), module=module, forbidden=set(forbidden))
    # -I: no user site, no PYTHON* variables, no cwd on the path: a clean interpreter.
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout)
    return loaded


def _direct_imports(module: str) -> set[str]:
    spec_path = ROOT / (module.replace(".", "/") + ".py")
    if not spec_path.exists():
        spec_path = ROOT / module.replace(".", "/") / "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(spec_path.read_text(), str(spec_path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_walk_finds_the_core() -> None:
    assert {"tchat.core.messages", "tchat.core.codec", "tchat.core.vclock"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_core_module_imports_no_io_clock_or_threads(module: str) -> None:
    assert _loaded_by(module) == []
    direct = {
        name
        for name in _direct_imports(module)
        for bad in FORBIDDEN_DIRECT
        if name == bad or name.startswith(bad + ".")
    }
    assert direct == set(), f"{module} imports {sorted(direct)}"


def test_the_probe_would_notice() -> None:
    # Guards the check itself: a module that does pull in a forbidden one is reported.
    assert "msgpack" in _loaded_by("tchat.core.codec", forbidden=("msgpack",))
    assert "asyncio" in _loaded_by("asyncio.queues")
    assert "logging" in _direct_imports("tchat.core.codec")
