"""Private conversations that persist (issue 16): the servers keep, per account, the peers
of its private conversations (folded from the log, most recent first, bounded), and a
login's Welcome lists them, so a quiet conversation reopens as the account's rooms do."""

from __future__ import annotations

import pytest
from core_bus import answer, key_for
from test_core_fold import BASE, COUNT, PORT, Log, fold, online
from test_core_nodes import cluster, leaders, serving

from tchat.core import codec
from tchat.core.desk import WELCOME_ROOM_BYTES
from tchat.core.effects import Ready
from tchat.core.errors import InvalidField
from tchat.core.fold import ClusterState
from tchat.core.messages import (
    MAX_ADDR,
    MAX_NAME,
    MAX_PEERS,
    MAX_SERVERS,
    Chat,
    Epoch,
    Logout,
    NameReleased,
    RoomInfo,
    SendChat,
    ServerInfo,
    Welcome,
)
from tchat.core.vclock import VectorClock


def pm(sender: str, to: str, text: str = "hi") -> Chat:
    return Chat(sender, None, to, text, False, VectorClock())


def test_the_fold_keeps_each_accounts_peers_most_recent_first() -> None:
    state, _ = fold(
        online("alice"),
        online("bob"),
        online("carol"),
        pm("alice", "bob"),
        pm("carol", "alice"),
        Chat("alice", "ops", None, "a room is no private chat", False, VectorClock()),
        pm("alice", "alice", "a note to self is no conversation either"),
    )
    assert state.peers("alice") == ("carol", "bob")
    assert state.peers("bob") == ("alice",)  # the addressee keeps the sender too
    assert state.peers("carol") == ("alice",)
    assert state.peers("dave") == ()
    log = Log()
    state.apply(log(pm("bob", "alice")))  # an old conversation comes back to the top
    assert state.peers("alice") == ("bob", "carol")


def test_the_fold_keeps_only_the_most_recent_peers() -> None:
    names = [f"user{index}" for index in range(MAX_PEERS + 10)]
    bodies = [online("alice"), *(online(name) for name in names)]
    state, _ = fold(*bodies, *(pm("alice", name) for name in names))
    assert state.peers("alice") == tuple(reversed(names[-MAX_PEERS:]))
    assert all(state.peers(name) == ("alice",) for name in names)


def test_peers_are_in_the_snapshot_identically_on_every_replica() -> None:
    bodies = [online("alice"), online("bob"), online("carol"), pm("alice", "bob")]
    one, _ = fold(*bodies, pm("alice", "carol"))
    two, _ = fold(*bodies, pm("alice", "carol"))
    other, _ = fold(*bodies, pm("carol", "bob"))
    assert one.snapshot() == two.snapshot()
    assert one.snapshot() != other.snapshot()  # same users and rooms, other conversations


def test_a_released_name_takes_its_peers_and_leaves_everyone_elses() -> None:
    state, _ = fold(
        online("alice"),
        online("bob"),
        pm("alice", "bob"),
        pm("bob", "alice"),
        NameReleased("alice"),
    )
    assert state.peers("alice") == ()
    # The name's next owner is someone else: bob's conversation was with the old one.
    assert state.peers("bob") == ()
    assert "alice" not in state.peers_of
    log = Log()
    for body in (online("alice", identity=b"n" * 32), pm("bob", "alice"), pm("bob", "alice")):
        state.apply(log(body))  # the next owner: a conversation of its own, from here on
    assert state.peers("bob") == ("alice",) and state.peers("alice") == ("bob",)


def test_a_private_message_to_an_unclaimed_name_keeps_no_list_for_it() -> None:
    state = ClusterState(BASE, COUNT, PORT)
    log = Log()
    for body in (online("alice"), pm("alice", "ghost"), pm("ghost", "alice")):
        state.apply(log(body))
    assert "ghost" not in state.peers_of  # lists only for accounts: bounded by them


def _ready(bus: object, client: object) -> Ready:
    events = bus.events[client.config.addr]  # type: ignore[attr-defined]
    (ready,) = [e for e in events if isinstance(e, Ready)]
    return ready


def test_a_login_is_back_in_its_quiet_private_conversations() -> None:
    bus, servers = cluster(seed=31)
    alice, bob, carol = serving(bus, "alice", "bob", "carol")
    assert answer(bus, alice, SendChat(None, "bob", "psst", False)) == ""
    assert answer(bus, carol, SendChat(None, "alice", "hello alice", False)) == ""
    bus.run_until(lambda: all(s.state.peers("alice") == ("carol", "bob") for s in servers), 2)
    assert answer(bus, alice, Logout()) == ""
    bus.run_until(lambda: "alice" not in bob.users, 2)
    (back,) = serving(bus, "alice")
    assert _ready(bus, back).peers == ("carol", "bob")  # nothing replayed, still listed
    assert _ready(bus, bob).peers == ()  # a first login: no conversation yet


def test_a_released_names_next_owner_is_in_none_of_its_conversations() -> None:
    bus, servers = cluster(seed=32)
    (leader,) = leaders(servers)
    alice, bob = serving(bus, "alice", "bob")
    assert answer(bus, alice, SendChat(None, "bob", "psst", False)) == ""
    bus.crash(alice.config.addr)
    assert leader.leadership is not None
    bus._apply(leader.config.addr, leader.leadership.desk.release_name("alice", bus.now))
    bus.run_until(lambda: all("alice" not in s.state.claims for s in servers), 2)
    assert all(s.state.peers("bob") == () for s in servers)
    newcomer = bus.add_client("alice", identity=key_for("the new alice"))
    bus.run_until(lambda: newcomer.state.name == "SERVING", 3)
    assert _ready(bus, newcomer).peers == ()


def _welcome(peers: tuple[str, ...], rooms: tuple[RoomInfo, ...] = ()) -> Welcome:
    lobby = RoomInfo("lobby", "239.255.42.9:47471", (), 0)
    servers = tuple(ServerInfo(index, "9" * MAX_ADDR) for index in range(MAX_SERVERS))
    epoch = Epoch(1, 1)
    return Welcome(
        epoch, 1, "127.0.0.1:1", "alice", 1, rooms, lobby, servers, 1, 1, 0, 1, 0, 0, peers
    )


def test_a_welcome_with_the_most_peers_and_rooms_fits_a_frame() -> None:
    widest = "\U0001f600" * MAX_NAME  # four UTF-8 bytes a character
    peers = tuple(f"{index:02d}{widest[2:]}" for index in range(MAX_PEERS))
    room = RoomInfo("r" * 32, "9" * MAX_ADDR, ("\U0001f600" * MAX_NAME,) * 3, 2**53 - 1, "t" * 300)
    rooms: list[RoomInfo] = []
    while codec.packed_size((*rooms, room)) <= WELCOME_ROOM_BYTES:
        rooms.append(room)
    data = codec.encode(_welcome(peers, tuple(rooms)))
    assert len(data) <= codec.MAX_FRAME
    assert codec.decode(data) == _welcome(peers, tuple(rooms))


@pytest.mark.parametrize(
    "peers",
    [
        tuple(f"u{index}" for index in range(MAX_PEERS + 1)),  # too many
        ("x" * (MAX_NAME + 1),),  # no name is that long
        ("",),
    ],
)
def test_a_welcome_with_forged_peers_is_refused(peers: tuple[str, ...]) -> None:
    with pytest.raises(InvalidField):
        codec.decode(codec.encode(_welcome(peers)))


def test_the_headless_ready_event_lists_the_peers() -> None:
    from tchat.runtime.headless import event_json

    shown = event_json(Ready("alice", 1, "127.0.0.1:1", Epoch(1, 1), ("carol", "bob")))
    assert shown is not None and shown["peers"] == ["carol", "bob"]  # most recent first
