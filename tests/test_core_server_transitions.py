"""The server's phase table: every (role, event) pair either moves to the listed phase or is
refused with an error that names the event and the role; only server.py assigns a phase."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tchat.core.config import ServerConfig
from tchat.core.errors import IllegalTransition
from tchat.core.leader import Leadership
from tchat.core.roles import (
    BARE_PHASES,
    SERVER_EVENTS,
    TRANSITIONS,
    Leading,
    ServerPhase,
    ServerRole,
    Syncing,
)
from tchat.core.server import ServerNode

CORE = Path(__file__).resolve().parent.parent / "tchat" / "core"
SERVER_SIDE = ("server", "candidacy", "following", "leader", "desk", "stream", "roles")


def phase_of(role: ServerRole, node: ServerNode) -> ServerPhase:
    if role is ServerRole.SYNCING:
        return Syncing(deadline=1.0)
    if role is ServerRole.LEADER:
        return Leading(Leadership(node, node.epoch, 0.0))
    return BARE_PHASES[role]


@pytest.mark.parametrize("role", list(ServerRole), ids=lambda r: r.name)
@pytest.mark.parametrize("event", SERVER_EVENTS)
def test_every_pair_moves_as_the_table_says_or_is_refused(role: ServerRole, event: str) -> None:
    node = ServerNode(ServerConfig(1, "s1"))
    node.phase = phase_of(role, node)
    target = TRANSITIONS.get((role, event))
    if target is None:
        for role_with_data in (ServerRole.SYNCING, ServerRole.LEADER):
            with pytest.raises(IllegalTransition) as refused:
                node.become(event, phase_of(role_with_data, node))
        with pytest.raises(IllegalTransition) as refused:
            node.become(event)
        assert repr(event) in str(refused.value) and str(role) in str(refused.value)
        assert node.role is role
        return
    new = phase_of(target, node)
    if target not in BARE_PHASES:
        with pytest.raises(IllegalTransition):
            node.become(event)  # a phase with data needs its data
        assert node.role is role
    node.become(event, new)
    assert node.phase is new and node.role is target
    assert (node.leadership is not None) == (target is ServerRole.LEADER)


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


def test_only_server_py_assigns_the_phase() -> None:
    offenders = []
    for name in SERVER_SIDE:
        if name == "server":
            continue  # checked below: only __init__ and become
        path = CORE / f"{name}.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Assign, ast.AnnAssign)):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            offenders += [
                f"{name}.py:{node.lineno}"
                for t in targets
                if isinstance(t, ast.Attribute) and t.attr in ("phase", "role", "leadership")
            ]
    assert offenders == []
    server = ast.parse((CORE / "server.py").read_text())
    assigning = [
        f.name
        for f in ast.walk(server)
        if isinstance(f, ast.FunctionDef)
        for node in ast.walk(f)
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Attribute) and t.attr == "phase"
    ]
    assert sorted(assigning) == ["__init__", "become"]
