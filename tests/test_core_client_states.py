"""The client's one (state, event) -> state table: every pair enumerated, the edges it had
before it named its events kept, and an illegal move named by its event and state."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from tchat.core.client import ClientNode
from tchat.core.client_states import TRANSITIONS, ClientEvent, ClientState
from tchat.core.config import ClientConfig
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


def node_in(state: ClientState) -> ClientNode:
    node = ClientNode(ClientConfig("alice", "c1", "127.0.0.1:9000"))
    node.state = state  # the test's shortcut; the node itself moves only by _become
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
    target = TRANSITIONS.get((state, event))
    if target is None:
        with pytest.raises(IllegalTransition) as refused:
            node._become(event, "why")
        assert event.value in str(refused.value) and repr(state) in str(refused.value)
        assert node.state is state
        return
    assert target is EVENT_TARGET[event]
    assert target in OLD_TARGETS[state]
    effects = node._become(event, "why")
    assert node.state is target
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


def test_every_event_is_taken_and_state_is_assigned_only_by_become() -> None:
    source = (Path(__file__).resolve().parent.parent / "tchat/core/client.py").read_text()
    for event in ClientEvent:
        assert f"ClientEvent.{event.name}" in source, event
    assignments = re.findall(r"self\.state = ", source)
    assert len(assignments) == 2  # __init__'s DISCOVERING and _become's
