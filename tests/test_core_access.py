"""Who may read what: scrollback, replay and private rooms, on core nodes wired by the
in-memory bus (no network), and the read rule against a brute-force model."""

from __future__ import annotations

from core_bus import Bus, answer, key_for
from test_core_nodes import chats, cluster, leaders, serving

from tchat.core.client import ClientNode, ClientState
from tchat.core.effects import HistoryLoaded, RoomDirectory, RoomExited
from tchat.core.fold import ClusterState
from tchat.core.messages import (
    CreateRoom,
    InviteUser,
    JoinRoom,
    KickUser,
    LeaveRoom,
    Logout,
    SendChat,
    SetRoomMode,
)
from tchat.core.server import ServerNode


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


def test_a_newcomer_to_a_public_room_reads_its_past() -> None:
    """Public rooms: "shared" history visibility, for a member now."""
    bus, _ = cluster(seed=5)
    alice, bob, carol = serving(bus, "alice", "bob", "carol")
    _room(bus, [alice, bob], "r")
    bus.submit(alice, SendChat("r", None, "before", False))
    bus.run_until(lambda: "before" in chats(bus, bob), 2)
    assert _history(bus, carol, "r") == []  # not a member: nothing
    _room(bus, [carol], "r")
    bus.submit(alice, SendChat("r", None, "after", False))
    bus.run_until(lambda: "after" in chats(bus, carol), 2)
    assert _history(bus, carol, "r") == ["before", "after"]
    assert "before" not in chats(bus, carol)  # scrollback, never delivered as live


def test_a_newcomer_to_a_private_room_reads_nothing_from_before_they_joined() -> None:
    bus, _ = cluster(seed=10)
    alice, bob = serving(bus, "alice", "bob")
    _room(bus, [alice], "r")
    bus.submit(alice, SendChat("r", None, "public once", False))
    bus.run_until(lambda: "public once" in chats(bus, alice), 2)
    assert answer(bus, alice, SetRoomMode("r", private=True)) == ""
    bus.submit(alice, SendChat("r", None, "private talk", False))
    bus.run_until(lambda: "private talk" in chats(bus, alice), 2)
    assert answer(bus, alice, InviteUser("r", "bob")) == ""
    _room(bus, [bob], "r")
    bus.submit(alice, SendChat("r", None, "welcome bob", False))
    bus.run_until(lambda: "welcome bob" in chats(bus, bob), 2)
    assert _history(bus, bob, "r") == ["welcome bob"]
    # Public again: the past from before stays with those who were there.
    assert answer(bus, alice, SetRoomMode("r", private=False)) == ""
    bus.submit(alice, SendChat("r", None, "open again", False))
    bus.run_until(lambda: "open again" in chats(bus, bob), 2)
    assert _history(bus, bob, "r") == ["welcome bob", "open again"]
    assert _history(bus, alice, "r") == [
        "public once",
        "private talk",
        "welcome bob",
        "open again",
    ]


def test_a_member_who_left_reads_no_more() -> None:
    bus, _ = cluster(seed=6)
    alice, bob = serving(bus, "alice", "bob")
    _room(bus, [alice, bob], "r")
    bus.submit(alice, SendChat("r", None, "while in", False))
    bus.run_until(lambda: "while in" in chats(bus, bob), 2)
    bus.submit(bob, LeaveRoom("r"))
    bus.run_until(lambda: "r" not in bob.rooms, 2)
    assert _history(bus, bob, "r") == []


def _leader_state(servers: list[ServerNode]) -> ClusterState:
    (leader,) = leaders(servers)
    return leader.state


def test_a_private_room_lets_in_only_whom_its_owner_invites() -> None:
    bus, servers = cluster(seed=7)
    bus.wire = True  # every frame through the real codec
    alice, bob, mallory = serving(bus, "alice", "bob", "mallory")
    assert answer(bus, alice, CreateRoom("p", private=True)) == ""
    bus.run_until(lambda: "p" in alice.rooms, 2)
    record = _leader_state(servers).rooms["p"]
    assert (record.owner, record.private) == ("alice", True)
    assert "private" in answer(bus, mallory, JoinRoom("p"))
    assert "owner" in answer(bus, mallory, InviteUser("p", "mallory"))
    assert "exists" in answer(bus, mallory, CreateRoom("p", private=False))
    assert answer(bus, alice, InviteUser("p", "bob")) == ""
    assert "invited" in answer(bus, alice, InviteUser("p", "bob"))
    assert answer(bus, bob, JoinRoom("p")) == ""
    bus.run_until(lambda: "p" in bob.rooms and "bob" in alice.rooms["p"].members, 2)
    # the invitation let bob in once: after /leave he needs another
    assert answer(bus, bob, LeaveRoom("p")) == ""
    assert "private" in answer(bus, bob, JoinRoom("p"))
    assert "p" not in mallory.rooms
    assert _history(bus, mallory, "p") == []


def test_a_kicked_member_is_told_and_reads_nothing_more() -> None:
    bus, servers = cluster(seed=8)
    alice, bob, carol = serving(bus, "alice", "bob", "carol")
    answer(bus, alice, CreateRoom("p", private=True))
    for name, client in (("bob", bob), ("carol", carol)):
        assert answer(bus, alice, InviteUser("p", name)) == ""
        assert answer(bus, client, JoinRoom("p")) == ""
    bus.run_until(lambda: len(alice.rooms["p"].members) == 3, 2)
    bus.submit(alice, SendChat("p", None, "before the kick", False))
    bus.run_until(lambda: "before the kick" in chats(bus, bob), 2)
    assert "owner" in answer(bus, carol, KickUser("p", "bob"))
    assert "yourself" in answer(bus, alice, KickUser("p", "alice"))
    assert answer(bus, alice, KickUser("p", "bob")) == ""
    bus.run_until(lambda: "p" not in bob.rooms, 2)
    assert RoomExited("p", "alice") in bus.events[bob.config.addr]
    bus.submit(alice, SendChat("p", None, "after the kick", False))
    bus.run_until(lambda: "after the kick" in chats(bus, carol), 2)
    bus.run(0.5)
    assert "after the kick" not in chats(bus, bob)
    assert _history(bus, bob, "p") == []
    assert "private" in answer(bus, bob, JoinRoom("p"))
    assert "bob" not in _leader_state(servers).rooms["p"].members


def test_the_owner_of_a_public_room_makes_it_private() -> None:
    bus, servers = cluster(seed=9)
    alice, bob, carol = serving(bus, "alice", "bob", "carol")
    _room(bus, [alice, bob], "r")  # made by /join: public, owned by its creator
    assert _leader_state(servers).rooms["r"].owner == "alice"
    assert "owner" in answer(bus, bob, SetRoomMode("r", private=True))
    assert "public" in answer(bus, alice, InviteUser("r", "carol"))
    assert answer(bus, alice, SetRoomMode("r", private=True)) == ""
    assert "private" in answer(bus, carol, JoinRoom("r"))
    assert "bob" in _leader_state(servers).rooms["r"].members  # members stay
    assert answer(bus, alice, SetRoomMode("r", private=False)) == ""
    assert answer(bus, carol, JoinRoom("r")) == ""


def _directory(bus: Bus, client: ClientNode) -> set[str]:
    request_id, effects = client.request_rooms(bus.now)
    bus._apply(client.config.addr, effects)
    found: set[str] = set()

    def answered() -> bool:
        for event in bus.events[client.config.addr]:
            if isinstance(event, RoomDirectory) and event.request_id == request_id:
                found.update(room.room for room in event.rooms)
                return True
        return False

    bus.run_until(answered, 2)
    return found


def test_the_room_directory_shows_a_private_room_only_to_its_people() -> None:
    bus, _ = cluster(seed=11)
    alice, bob, mallory = serving(bus, "alice", "bob", "mallory")
    _room(bus, [mallory], "open")
    assert answer(bus, alice, CreateRoom("den", private=True)) == ""
    assert answer(bus, alice, InviteUser("den", "bob")) == ""
    bus.run(0.2)
    assert _directory(bus, mallory) == {"open"}
    assert _directory(bus, bob) == {"open", "den"}  # invited: may see what to /join
    assert _directory(bus, alice) == {"open", "den"}


def test_a_member_who_went_offline_is_still_in_the_private_room_when_back() -> None:
    bus, servers = cluster(seed=12)
    alice, bob = serving(bus, "alice", "bob")
    assert answer(bus, alice, CreateRoom("p", private=True)) == ""
    assert answer(bus, alice, InviteUser("p", "bob")) == ""
    assert answer(bus, bob, JoinRoom("p")) == ""
    assert answer(bus, bob, Logout()) == ""
    bus.run_until(lambda: "bob" not in _leader_state(servers).users, 2)
    assert "bob" in _leader_state(servers).rooms["p"].members  # offline is not out
    assert "bob" in alice.rooms["p"].members
    (again,) = serving(bus, "bob")
    assert "p" in again.rooms  # back in it at login: no invitation, no /join
    # A /join of it is answered with the room (no second membership), not refused.
    joins = len(_leader_state(servers).rooms["p"].stretches["bob"])
    assert answer(bus, again, JoinRoom("p")) == ""
    assert len(_leader_state(servers).rooms["p"].stretches["bob"]) == joins


def test_the_next_owner_of_a_released_name_owns_none_of_its_rooms() -> None:
    """An operator released alice's name; whoever claims it next is another person: they
    may not walk into her private room, nor invite or kick there."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    alice, bob = serving(bus, "alice", "bob")
    assert answer(bus, alice, CreateRoom("vault", private=True)) == ""
    assert answer(bus, alice, SendChat("vault", None, "the combination", False)) == ""
    bus.crash(alice.config.addr)
    assert leader.leadership is not None
    bus._apply(leader.config.addr, leader.leadership.desk.release_name("alice", bus.now))
    bus.run_until(lambda: all("alice" not in s.state.claims for s in servers), 2)
    newcomer = bus.add_client("alice", identity=key_for("the new alice"))
    bus.run_until(lambda: newcomer.state is ClientState.SERVING, 3)
    assert "private" in answer(bus, newcomer, JoinRoom("vault"))
    assert "owner" in answer(bus, newcomer, InviteUser("vault", "bob"))
    assert {s.state.rooms["vault"].owner for s in servers} == {None}
