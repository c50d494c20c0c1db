"""Room messages committed back to back share one RoomFrame: what the frames carry and
what the members deliver (core nodes on the in-memory bus, no network)."""

from __future__ import annotations

from core_bus import Bus
from test_core_nodes import chats, cluster, serving

from tchat.core.client import ClientNode
from tchat.core.messages import JoinRoom, RoomFrame, SendChat, SessionFrame
from tchat.core.stream import ROOM_BATCH, ROOM_BATCH_TEXT


def _room(bus: Bus, clients: list[ClientNode], room: str) -> None:
    for client in clients:
        bus.submit(client, JoinRoom(room))
    bus.run_until(
        lambda: all(
            room in c.rooms and len(c.rooms[room].members) == len(clients) for c in clients
        ),
        2,
    )


def _room_frames(bus: Bus, room: str) -> list[RoomFrame]:
    """Each room frame once (the bus records one copy per receiver)."""
    seen: dict[int, RoomFrame] = {}
    for _, _, message in bus.sent:
        if isinstance(message, RoomFrame) and message.room == room:
            seen[message.gsn] = message
    return [seen[gsn] for gsn in sorted(seen)]


def test_a_burst_shares_frames_and_every_member_delivers_it_in_one_order() -> None:
    bus, _ = cluster(seed=3)
    alice, bob, carol = serving(bus, "alice", "bob", "carol")
    _room(bus, [alice, bob, carol], "r")
    for i in range(40):
        bus.submit(alice, SendChat("r", None, f"a{i}", False))
        bus.submit(bob, SendChat("r", None, f"b{i}", False))
    bus.run_until(lambda: all(len(chats(bus, c)) == 80 for c in (alice, bob, carol)), 5)
    order = chats(bus, carol)
    assert chats(bus, alice) == order and chats(bus, bob) == order
    assert [t for t in order if t[0] == "a"] == [f"a{i}" for i in range(40)]
    frames = _room_frames(bus, "r")
    assert sum(len(f.entries) for f in frames) == 80
    assert len(frames) < 80  # some commits carried several messages in one frame
    assert max(len(f.entries) for f in frames) <= ROOM_BATCH
    for before, frame in zip(frames, frames[1:], strict=False):
        assert frame.prev == before.gsn  # the room's chain links frames, not entries


def test_a_run_ends_where_another_channel_begins() -> None:
    """A private message committed amid a room's run splits it: the frames' gsns leave
    room for the session frame between them, so hold-back order stays exact."""
    bus, _ = cluster(seed=5)
    alice, bob = serving(bus, "alice", "bob")
    _room(bus, [alice, bob], "r")
    for i in range(30):
        bus.submit(alice, SendChat("r", None, f"r{i}", False))
        if i % 3 == 0:
            bus.submit(alice, SendChat(None, "bob", f"p{i}", False))
    bus.run_until(lambda: len(chats(bus, bob)) == len(chats(bus, alice)) == 40, 5)
    assert chats(bus, bob) == chats(bus, alice)
    frames = _room_frames(bus, "r")
    private = {
        m.gsn
        for _, _, m in bus.sent
        if isinstance(m, SessionFrame) and type(m.entry.body).__name__ == "Chat"
    }
    for frame in frames:
        first = frame.gsn - len(frame.entries) + 1
        assert not any(first <= g <= frame.gsn for g in private)


def test_a_frame_stays_small_whatever_the_text() -> None:
    bus, _ = cluster(seed=7)
    alice, bob = serving(bus, "alice", "bob")
    _room(bus, [alice, bob], "r")
    for i in range(12):
        bus.submit(alice, SendChat("r", None, f"{i:02d}" + "x" * 1500, False))
    bus.run_until(lambda: len(chats(bus, bob)) == 12, 5)
    for frame in _room_frames(bus, "r"):
        text = sum(len(e.body.text) for e in frame.entries)  # type: ignore[attr-defined]
        assert len(frame.entries) == 1 or text <= ROOM_BATCH_TEXT
    assert [t[:2] for t in chats(bus, bob)] == [f"{i:02d}" for i in range(12)]
