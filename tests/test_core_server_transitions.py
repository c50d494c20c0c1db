"""The server's role table: every (role, event) pair either moves to the listed role or is
refused with an error that names the event and the role."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tchat.core.config import ServerConfig
from tchat.core.errors import IllegalTransition
from tchat.core.roles import SERVER_EVENTS, TRANSITIONS, ServerRole
from tchat.core.server import ServerNode

CORE = Path(__file__).resolve().parent.parent / "tchat" / "core"
SERVER_SIDE = ("server", "candidacy", "following", "leader", "desk", "stream")


@pytest.mark.parametrize("role", list(ServerRole), ids=lambda r: r.name)
@pytest.mark.parametrize("event", SERVER_EVENTS)
def test_every_pair_moves_as_the_table_says_or_is_refused(role: ServerRole, event: str) -> None:
    node = ServerNode(ServerConfig(1, "s1"))
    node.role = role
    target = TRANSITIONS.get((role, event))
    if target is None:
        with pytest.raises(IllegalTransition) as refused:
            node.become(event)
        assert repr(event) in str(refused.value) and str(role) in str(refused.value)
        assert node.role is role
    else:
        node.become(event)
        assert node.role is target


def test_an_unknown_event_is_refused() -> None:
    node = ServerNode(ServerConfig(1, "s1"))
    with pytest.raises(IllegalTransition, match="'no-such-event'"):
        node.become("no-such-event")


def test_a_stopped_server_never_moves() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] is ServerRole.STOPPED]


def test_only_the_table_lists_events() -> None:
    """Every event a server module raises is in the table (a typo would be a crash)."""
    used: set[str] = set()
    for name in SERVER_SIDE:
        for node in ast.walk(ast.parse((CORE / f"{name}.py").read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "become"
            ):
                for arg in ast.walk(node.args[0]):
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        used.add(arg.value)
    assert used, "the walker found no become() call"
    assert used <= set(SERVER_EVENTS), used - set(SERVER_EVENTS)


def test_only_server_py_assigns_the_role() -> None:
    offenders = []
    for name in SERVER_SIDE:
        if name == "server":
            continue
        path = CORE / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else []
            offenders += [
                f"{name}.py:{node.lineno}"
                for t in targets
                if isinstance(t, ast.Attribute) and t.attr == "role"
            ]
    assert not offenders
