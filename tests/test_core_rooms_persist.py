"""Rooms that persist (issue 16): membership is the account's, not the session's, so a
logout or a crash leaves the user in their rooms, and the next login is back in them with
what was said meanwhile (replayed: the client counts it unread)."""

from __future__ import annotations

from core_bus import answer, key_for
from test_core_access import _history, _leader_state, _room
from test_core_nodes import chats, cluster, leaders, serving

from tchat.core.desk import REPLAY_PER_CONVERSATION, newest_per_conversation
from tchat.core.effects import RoomEntered
from tchat.core.messages import (
    Chat,
    CreateRoom,
    Dot,
    Entry,
    InviteUser,
    JoinRoom,
    KickUser,
    LeaveRoom,
    Logout,
    RoomLeft,
    SendChat,
)
from tchat.core.vclock import VectorClock


def test_a_logout_keeps_the_rooms_and_the_next_login_reads_what_came_meanwhile() -> None:
    bus, servers = cluster(seed=21)
    alice, bob = serving(bus, "alice", "bob")
    _room(bus, [alice, bob], "ops")
    _room(bus, [alice], "dev")
    assert answer(bus, alice, Logout()) == ""
    bus.run_until(lambda: "alice" not in bob.users, 2)
    assert sorted(_leader_state(servers).rooms_of["alice"]) == ["dev", "ops"]
    assert "alice" in bob.rooms["ops"].members  # offline, still a member
    for text in ("while you were out", "and again"):
        assert answer(bus, bob, SendChat("ops", None, text, False)) == ""

    (back,) = serving(bus, "alice")
    assert sorted(back.rooms) == ["dev", "ops"]  # from the Welcome, no /join
    entered = [e.info.room for e in bus.events[back.config.addr] if isinstance(e, RoomEntered)]
    assert sorted(entered) == ["dev", "ops"]
    bus.run_until(lambda: chats(bus, back) == ["while you were out", "and again"], 2)
    # Live again too: the room's stream reaches the new session.
    assert answer(bus, bob, SendChat("ops", None, "welcome back", False)) == ""
    bus.run_until(lambda: "welcome back" in chats(bus, back), 2)


def test_a_crashed_client_stays_in_its_rooms() -> None:
    bus, servers = cluster(seed=22)
    alice, bob = serving(bus, "alice", "bob")
    _room(bus, [alice, bob], "ops")
    bus.crash(alice.config.addr)
    bus.run_until(lambda: "alice" not in _leader_state(servers).users, 6)
    assert "alice" in _leader_state(servers).rooms["ops"].members
    assert answer(bus, bob, SendChat("ops", None, "missed it", False)) == ""
    (back,) = serving(bus, "alice")
    assert "ops" in back.rooms
    bus.run_until(lambda: chats(bus, back) == ["missed it"], 2)


def test_leave_and_kick_end_membership_logout_does_not() -> None:
    bus, servers = cluster(seed=23)
    alice, bob = serving(bus, "alice", "bob")
    _room(bus, [alice, bob], "ops")
    assert answer(bus, alice, LeaveRoom("ops")) == ""
    assert answer(bus, alice, Logout()) == ""
    bus.run_until(lambda: "alice" not in bob.users, 2)
    assert answer(bus, bob, SendChat("ops", None, "not for alice", False)) == ""
    (back,) = serving(bus, "alice")
    bus.run(0.3)
    assert "ops" not in back.rooms
    assert chats(bus, back) == []
    assert _history(bus, back, "ops") == []  # not a member: no scrollback either


def test_an_offline_member_of_a_private_room_can_be_kicked() -> None:
    bus, servers = cluster(seed=24)
    alice, bob = serving(bus, "alice", "bob")
    assert answer(bus, alice, CreateRoom("den", private=True)) == ""
    assert answer(bus, alice, InviteUser("den", "bob")) == ""
    assert answer(bus, bob, JoinRoom("den")) == ""
    assert answer(bus, bob, Logout()) == ""
    bus.run_until(lambda: "bob" not in alice.users, 2)
    assert answer(bus, alice, KickUser("den", "bob")) == ""
    assert answer(bus, alice, SendChat("den", None, "after the kick", False)) == ""
    (back,) = serving(bus, "bob")
    bus.run(0.3)
    assert "den" not in back.rooms
    assert "after the kick" not in chats(bus, back)


def test_a_released_name_takes_no_rooms_to_its_next_owner() -> None:
    bus, servers = cluster(seed=25)
    (leader,) = leaders(servers)
    alice, bob = serving(bus, "alice", "bob")
    _room(bus, [alice, bob], "ops")
    bus.crash(alice.config.addr)
    assert leader.leadership is not None
    bus._apply(leader.config.addr, leader.leadership.desk.release_name("alice", bus.now))
    bus.run_until(lambda: all("alice" not in s.state.claims for s in servers), 2)
    assert all("alice" not in s.state.rooms["ops"].members for s in servers)
    left = [e.body for e in leader.log.entries() if isinstance(e.body, RoomLeft)]
    assert left == [RoomLeft("ops", "alice")]  # streamed: bob's client sees her go
    bus.run_until(lambda: "alice" not in bob.rooms["ops"].members, 2)
    newcomer = bus.add_client("alice", identity=key_for("the new alice"))
    bus.run_until(lambda: newcomer.rooms == {} and newcomer.state.name == "SERVING", 3)


def test_a_login_replays_only_the_newest_of_each_conversation() -> None:
    def chat(n: int, room: str | None, sender: str, to: str | None) -> Entry:
        body = Chat(sender, room, to, f"m{n}", False, VectorClock())
        return Entry(Dot(1, n), VectorClock({1: n}), float(n), None, body)

    most = REPLAY_PER_CONVERSATION
    entries = [chat(n, "busy", "bob", None) for n in range(1, most + 11)]
    entries += [chat(most + 20, "quiet", "bob", None)]
    entries += [chat(most + 21, None, "bob", "alice"), chat(most + 22, None, "alice", "bob")]
    kept = newest_per_conversation(entries, "alice", most)
    busy = [e for e in kept if e.body.room == "busy"]  # type: ignore[attr-defined]
    assert len(busy) == most and busy[0].dot.counter == 11  # the newest, in order
    assert [e.dot.counter for e in kept[-3:]] == [most + 20, most + 21, most + 22]
