"""The client's one (state, event) -> phase table: every pair enumerated, the edges it had
before it named its events kept, an illegal move named by its event and state, a phase with
data refused without its data, and the phase assigned only by ClientNode._become."""

from __future__ import annotations

import ast
import dataclasses
import itertools
from pathlib import Path

import pytest

from tchat.core.client import ClientNode
from tchat.core.client_states import (
    BARE_PHASES,
    TRANSITIONS,
    ClientEvent,
    ClientPhase,
    ClientState,
    Discovering,
    Registering,
    Resuming,
    Serving,
)
from tchat.core.config import ClientConfig
from tchat.core.delivery import HoldBack
from tchat.core.effects import ConnectionChanged, Deliver
from tchat.core.errors import IllegalTransition

S = ClientState

# The legal targets of each state before the events were part of the table: the events
# may only narrow them (behaviour is pinned by the simulator's fingerprints).
OLD_TARGETS: dict[ClientState, set[ClientState]] = {
    S.DISCOVERING: {S.DISCOVERING, S.REGISTERING, S.RESUMING, S.FAILED, S.CLOSED},
    S.REGISTERING: {S.DISCOVERING, S.REGISTERING, S.SERVING, S.FAILED, S.CLOSED},
    S.SERVING: {S.DISCOVERING, S.RESUMING, S.SERVING, S.CLOSED, S.FAILED},
    S.RESUMING: {S.DISCOVERING, S.RESUMING, S.SERVING, S.FAILED, S.CLOSED},
    S.FAILED: {S.CLOSED},
    S.CLOSED: set(),
}

# What each event may lead to, whatever the state it starts from.
EVENT_TARGET = {
    ClientEvent.INVALID_NAME: S.FAILED,
    ClientEvent.REJECTED: S.FAILED,
    ClientEvent.LEADER: S.REGISTERING,
    ClientEvent.LEADER_AGAIN: S.RESUMING,
    ClientEvent.WELCOMED: S.SERVING,
    ClientEvent.RESUME: S.RESUMING,
    ClientEvent.SUSPECT: S.DISCOVERING,
    ClientEvent.LOGGED_OUT: S.CLOSED,
}


def phase_of(state: ClientState) -> ClientPhase:
    """A phase of kind ``state`` with some data in it."""
    match state:
        case S.DISCOVERING:
            return Discovering(retry_at=2.0)
        case S.REGISTERING:
            return Registering(retry_at=3.0, attempts=2)
        case S.RESUMING:
            return Resuming(retry_at=4.0, attempts=3)
        case S.SERVING:
            return Serving(HoldBack("alice", 0, ()), next_beat=5.0, last_resend=6.0)
    return BARE_PHASES[state]


def node_in(state: ClientState) -> ClientNode:
    node = ClientNode(ClientConfig("alice", "c1", "127.0.0.1:9000"))
    node.phase = phase_of(state)  # the test's shortcut; the node itself moves only by _become
    return node


@pytest.mark.parametrize(
    ("state", "event"),
    list(itertools.product(ClientState, ClientEvent)),
    ids=lambda x: x.value,
)
def test_every_pair_moves_by_the_table_or_is_refused_by_name(
    state: ClientState, event: ClientEvent
) -> None:
    node = node_in(state)
    before = node.phase
    target = TRANSITIONS.get((state, event))
    if target is None:
        for offered in (None, *(phase_of(s) for s in ClientState)):
            with pytest.raises(IllegalTransition) as refused:
                node._become(event, "why", offered)
            assert event.value in str(refused.value) and repr(state) in str(refused.value)
            assert node.phase is before
        return
    assert target is EVENT_TARGET[event]
    assert target in OLD_TARGETS[state]
    for wrong in (phase_of(s) for s in ClientState if s is not target):
        with pytest.raises(IllegalTransition):
            node._become(event, "why", wrong)  # a phase of another state is refused
        assert node.phase is before
    if target not in BARE_PHASES:
        with pytest.raises(IllegalTransition):
            node._become(event, "why")  # a phase with data needs its data
        assert node.phase is before
    new = phase_of(target)
    effects = node._become(event, "why", new if target not in BARE_PHASES else None)
    assert node.state is target
    assert node.phase is BARE_PHASES.get(target, new)
    # Nothing of the old phase survives but what the new one was given.
    assert (node.holdback is not None) == (target is S.SERVING)
    changed = [Deliver(ConnectionChanged(target.value, "why"))] if target is not state else []
    assert effects == changed


def test_the_table_keeps_every_edge_the_old_one_had_for_its_events() -> None:
    kept = {
        (state, event)
        for state, targets in OLD_TARGETS.items()
        for event, target in EVENT_TARGET.items()
        if target in targets
    }
    assert kept == set(TRANSITIONS)


CORE = Path(__file__).resolve().parent.parent / "tchat" / "core"
CLIENT_SIDE = ("client", "inbox", "delivery", "client_states", "status")


def assigners(path: Path, attrs: tuple[str, ...]) -> list[str]:
    """The functions of ``path`` that assign an attribute named one of ``attrs``."""
    return sorted(
        f.name
        for f in ast.walk(ast.parse(path.read_text()))
        if isinstance(f, ast.FunctionDef)
        for node in ast.walk(f)
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Attribute) and t.attr in attrs
    )


def test_every_event_is_taken_and_the_phase_is_assigned_only_by_become() -> None:
    source = (CORE / "client.py").read_text()
    for event in ClientEvent:
        assert f"ClientEvent.{event.name}" in source, event
    assert assigners(CORE / "client.py", ("phase", "state")) == ["__init__", "_become"]
    for name in CLIENT_SIDE[1:]:
        assert assigners(CORE / f"{name}.py", ("phase", "holdback")) == [], name


def test_a_phase_carries_only_its_own_data() -> None:
    """The data a client's phase holds, by phase (adding a field is a decision: say here
    which transition carries it, if any)."""
    fields = {
        state: sorted(f.name for f in dataclasses.fields(phase_of(state))) for state in ClientState
    }
    assert fields == {
        S.DISCOVERING: ["retry_at"],
        S.REGISTERING: ["attempts", "retry_at"],
        S.RESUMING: ["attempts", "retry_at"],
        S.SERVING: ["holdback", "last_resend", "next_beat"],
        S.FAILED: [],
        S.CLOSED: [],
    }
