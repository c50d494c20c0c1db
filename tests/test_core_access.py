"""Who may read what: scrollback, replay and private rooms, on core nodes wired by the
in-memory bus (no network), and the read rule against a brute-force model."""

from __future__ import annotations

from core_bus import Bus
from test_core_nodes import chats, cluster, serving

from tchat.core.client import ClientNode
from tchat.core.effects import HistoryLoaded
from tchat.core.messages import JoinRoom, SendChat


def _history(bus: Bus, client: ClientNode, room: str | None, peer: str | None = None) -> list[str]:
    request_id, effects = client.request_history(room, peer, None, 500, bus.now)
    bus._apply(client.config.addr, effects)
    found: list[str] = []

    def answered() -> bool:
        replies = [
            e
            for e in bus.events[client.config.addr]
            if isinstance(e, HistoryLoaded) and e.request_id == request_id
        ]
        found[:] = [entry.body.text for r in replies for entry in r.entries]  # type: ignore[attr-defined]
        return bool(replies)

    bus.run_until(answered, 2)
    return found


def _room(bus: Bus, clients: list[ClientNode], room: str) -> None:
    for client in clients:
        bus.submit(client, JoinRoom(room))
    bus.run_until(lambda: all(room in c.rooms for c in clients), 2)


def test_a_non_member_reads_no_history_of_a_room() -> None:
    bus, _ = cluster(seed=4)
    alice, bob, mallory = serving(bus, "alice", "bob", "mallory")
    _room(bus, [alice, bob], "r")
    bus.submit(alice, SendChat("r", None, "secret plan", False))
    bus.run_until(lambda: "secret plan" in chats(bus, bob), 2)
    assert _history(bus, bob, "r") == ["secret plan"]
    assert _history(bus, mallory, "r") == []


def test_a_newcomer_reads_nothing_from_before_they_joined() -> None:
    bus, _ = cluster(seed=5)
    alice, bob, carol = serving(bus, "alice", "bob", "carol")
    _room(bus, [alice, bob], "r")
    bus.submit(alice, SendChat("r", None, "before", False))
    bus.run_until(lambda: "before" in chats(bus, bob), 2)
    _room(bus, [carol], "r")
    bus.submit(alice, SendChat("r", None, "after", False))
    bus.run_until(lambda: "after" in chats(bus, carol), 2)
    assert _history(bus, carol, "r") == ["after"]
    assert _history(bus, bob, "r") == ["before", "after"]


def test_a_member_who_left_reads_no_more() -> None:
    from tchat.core.messages import LeaveRoom

    bus, _ = cluster(seed=6)
    alice, bob = serving(bus, "alice", "bob")
    _room(bus, [alice, bob], "r")
    bus.submit(alice, SendChat("r", None, "while in", False))
    bus.run_until(lambda: "while in" in chats(bus, bob), 2)
    bus.submit(bob, LeaveRoom("r"))
    bus.run_until(lambda: "r" not in bob.rooms, 2)
    assert _history(bus, bob, "r") == []
