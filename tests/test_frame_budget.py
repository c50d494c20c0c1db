"""Every frame a node builds fits the frame cap whatever its entries weigh: batches, chunks
and runs are split by encoded bytes, never by a count alone (core nodes on the in-memory
bus, every message through the real codec and its cap)."""

from __future__ import annotations

from typing import Any

import pytest
from core_bus import Bus
from test_core_nodes import chats, leaders, settled

from tchat.core import codec, desk
from tchat.core.client import ClientNode, ClientState
from tchat.core.effects import HistoryLoaded, OpFailed, RoomDirectory
from tchat.core.messages import (
    MAX_NAME,
    MAX_ROOM,
    MAX_SERVERS,
    MAX_TEXT,
    Admit,
    Append,
    Chat,
    ClusterStatusRequest,
    Dot,
    Entry,
    EntryBody,
    Epoch,
    HistoryReply,
    JoinRoom,
    LobbyFrame,
    Logout,
    OpError,
    Origin,
    Replay,
    RoomFrame,
    RoomInfo,
    RoomJoined,
    SendChat,
    SessionFrame,
    StatusReply,
    Submit,
    SyncData,
    Touch,
    UserOnline,
)
from tchat.core.schema import MAX_INT, MAX_OTHER_STR
from tchat.core.server import ServerNode
from tchat.core.vclock import VectorClock


def _big_text(i: int) -> str:
    """A text of MAX_TEXT characters, mostly multi-byte: ~12 KB of UTF-8."""
    head = f"{i:04d} "
    return head + ("é🙂x🙂" * MAX_TEXT)[: MAX_TEXT - len(head)]


def _wired_cluster(seed: int) -> tuple[Bus, list[ServerNode]]:
    bus = Bus(seed=seed, wire=True)
    servers = [bus.add_server(i) for i in (5, 9, 3)]
    bus.run_until(lambda: settled(servers), 5)
    return bus, servers


def _serving(bus: Bus, *names: str, **config: Any) -> list[ClientNode]:
    clients = [bus.add_client(name, **config) for name in names]
    bus.run_until(lambda: all(c.state is ClientState.SERVING for c in clients), 5)
    return clients


def test_a_burst_of_max_size_room_messages_commits_and_is_delivered() -> None:
    """Found on 127.0.0.1: 20 lines of 3,990 characters at once made an 81 KB Append that
    the transport refused on every retry; nothing committed again, for anyone."""
    bus, _ = _wired_cluster(seed=11)
    alice, bob = _serving(bus, "alice", "bob")
    (carol,) = _serving(bus, "carol", multicast=False)  # the room over her session
    for client in (alice, bob, carol):
        bus.submit(client, JoinRoom("r"))
    bus.run_until(
        lambda: all("r" in c.rooms and len(c.rooms["r"].members) == 3 for c in (alice, bob, carol)),
        3,
    )
    texts = [_big_text(i) for i in range(50)]
    for text in texts:
        bus.submit(alice, SendChat("r", None, text, False))
    bus.run_until(lambda: all(len(chats(bus, c)) == 50 for c in (alice, bob, carol)), 10)
    for client in (alice, bob, carol):
        assert chats(bus, client) == texts
    bus.submit(bob, SendChat("r", None, "still there?", False))
    bus.run_until(lambda: all(chats(bus, c)[-1:] == ["still there?"] for c in (alice, carol)), 3)
    assert not bus.oversized


def test_max_size_private_messages_reach_an_offline_user_at_login_and_in_history() -> None:
    """Replay and HistoryReply of many max-size entries are chunked by their bytes."""
    bus, _ = _wired_cluster(seed=12)
    alice, bob = _serving(bus, "alice", "bob")
    bus.submit(bob, Logout())
    bus.run_until(lambda: "bob" not in alice.users, 3)
    texts = [_big_text(i) for i in range(30)]
    for text in texts:
        bus.submit(alice, SendChat(None, "bob", text, False))
    bus.run(0.5)
    (bob2,) = _serving(bus, "bob")
    bus.run_until(lambda: chats(bus, bob2) == texts, 5)
    request, effects = alice.request_history(None, "bob", None, 500, bus.now)
    bus._apply(alice.config.addr, effects)
    bus.run(0.5)
    history = [
        entry.body.text  # type: ignore[attr-defined]
        for event in bus.events[alice.config.addr]
        if isinstance(event, HistoryLoaded) and event.request_id == request
        for entry in event.entries
    ]
    assert sorted(history) == sorted(texts)
    assert not bus.oversized


def test_a_restarted_backup_catching_up_on_max_size_entries_is_admitted() -> None:
    """Admit (and the SyncData a new leader pulls) are chunked by bytes too."""
    bus, servers = _wired_cluster(seed=13)
    alice, bob = _serving(bus, "alice", "bob")
    backup = next(s for s in servers if s not in leaders(servers))
    bus.crash(backup.config.addr)
    texts = [_big_text(i) for i in range(20)]
    for text in texts:
        bus.submit(alice, SendChat(None, "bob", text, False))
    bus.run_until(lambda: len(chats(bus, bob)) == 20, 5)
    restarted = bus.add_server(backup.server_id)
    (leader,) = leaders(servers)
    bus.run_until(lambda: restarted.log.clock == leader.log.clock, 5)
    assert not bus.oversized


def test_a_login_storm_of_long_names_and_ids_keeps_lobby_frames_under_the_cap() -> None:
    """64 logins share a lobby frame by count; with 32-character names and 256-character
    client ids of 4-byte characters that frame weighed ~90 KB."""
    bus, _ = _wired_cluster(seed=14)
    (watcher,) = _serving(bus, "watcher")
    names = [("🙂" * 28) + f"{i:04d}" for i in range(70)]
    clients = [
        bus.add_client(name, client_id=("🙂" * 252) + f"{i:04d}") for i, name in enumerate(names)
    ]
    bus.run_until(lambda: all(c.state is ClientState.SERVING for c in clients), 10)
    bus.run_until(lambda: len(watcher.users) == 71, 5)
    assert not bus.oversized


def _sequence(bus: Bus, leader: ServerNode, bodies: list[EntryBody]) -> None:
    """Record ``bodies`` through the leader as if clients had asked (they commit and stream
    like any entry), a few hundred at a time."""
    lead = leader.leadership
    assert lead is not None
    for start in range(0, len(bodies), 200):
        for body in bodies[start : start + 200]:
            _, effects = lead.sequence(body, bus.now)
            bus._apply(leader.config.addr, effects)
        bus._apply(leader.config.addr, lead.flush(bus.now))
        bus.run(0.05)


def test_user_lists_directories_status_and_welcomes_of_a_crowded_cluster_fit() -> None:
    """400 users with 32-character names and 64-character addresses made a ~160 KB
    UserList chunk (400 users a chunk) and StatusReply; 20 rooms of 50 such members a
    ~130 KB RoomsReply; a member of 700 rooms an ~80 KB Welcome that it could never resume
    with. Each is cut by its bytes now."""
    bus, servers = _wired_cluster(seed=15)
    (alice,) = _serving(bus, "alice")
    (leader,) = leaders(servers)
    names = [("é" * 28) + f"{i:04d}" for i in range(400)]
    addr = "🙂" * 56 + ":1234"
    _sequence(bus, leader, [UserOnline(n, addr, f"id-{n}") for n in names])
    crowded = [("é" * 28) + f"{i:04d}" for i in range(20)]
    _sequence(bus, leader, [RoomJoined(r, n) for r in crowded for n in names[:50]])
    many = [("🙂" * 28) + f"{i:04d}" for i in range(700)]
    _sequence(bus, leader, [RoomJoined(r, "alice") for r in many])
    bus.run_until(lambda: len(alice.rooms) == 700 and len(alice.users) == 401, 10)

    (bob,) = _serving(bus, "bob")  # a UserList of 402 long users
    bus.run_until(lambda: len(bob.users) == 402, 3)
    request, effects = bob.request_rooms(bus.now)
    bus._apply(bob.config.addr, effects)
    bus.run(0.2)
    (directory,) = [e for e in bus.events[bob.config.addr] if isinstance(e, RoomDirectory)]
    assert len(directory.rooms) == 720
    bus._post("status", leader.config.addr, ClusterStatusRequest("status", 7))
    bus.run(0.1)
    (status,) = [m for src, dst, m in bus.sent if dst == "status"]
    assert isinstance(status, StatusReply) and status.user_count == 402
    assert 0 < len(status.users) < 300 and 0 < len(status.rooms) < 100

    bus.crash(leader.config.addr)  # alice resumes with the next leader: a Welcome
    others = [s for s in servers if s is not leader]
    bus.run_until(lambda: len(leaders(others)) == 1, 5)
    bus.run_until(lambda: alice.state is ClientState.SERVING and alice.epoch > leader.epoch, 5)
    assert len(alice.rooms) == 700
    bus.submit(alice, SendChat(many[-1], None, "still in every room", False))
    bus.run_until(lambda: chats(bus, alice)[-1:] == ["still in every room"], 3)
    assert not bus.oversized


# --------------------------------------------------------------------------- the largest entry
def _largest_entry() -> Entry:
    """The heaviest entry a client can make a leader record: every string at its limit in
    4-byte characters, every int at 2**63-1, both clocks naming MAX_SERVERS servers."""
    clock = VectorClock({MAX_INT - i: MAX_INT for i in range(MAX_SERVERS)})
    wide = "🙂"
    body = Chat(wide * MAX_NAME, wide * MAX_ROOM, None, wide * MAX_TEXT, True, clock)
    return Entry(Dot(MAX_INT, MAX_INT), clock, 1e300, Origin(wide * MAX_OTHER_STR, MAX_INT), body)


def test_the_largest_entry_and_every_frame_holding_it_fit_the_cap() -> None:
    entry = _largest_entry()
    size = codec.entry_size(entry)
    assert size == len(codec.encode_entry(entry)) and size <= codec.MAX_ENTRY, size
    assert 2 * codec.MAX_ENTRY <= codec.FRAME_BUDGET  # a batch always takes one more
    epoch = Epoch(MAX_INT, MAX_INT)
    clock = entry.clock
    touches = tuple(Touch("🙂" * MAX_NAME, MAX_INT) for _ in range(16))  # measured past 16
    room = RoomInfo("🙂" * MAX_ROOM, "x" * 64, ("🙂" * MAX_NAME,), MAX_INT)
    for run in codec.split([entry] * 8, codec.entry_size):
        entries = tuple(run)
        assert len(entries) == 2  # a full budget: two of them
        frames = [
            Append(MAX_INT, epoch, MAX_INT, entries),
            Admit(MAX_INT, epoch, MAX_INT, entries, True),
            SyncData(MAX_INT, epoch, MAX_INT, entries, clock, True),
            Replay(epoch, MAX_INT, entries),
            HistoryReply(epoch, MAX_INT, entries),
            RoomFrame(epoch, MAX_INT, MAX_INT, "🙂" * MAX_ROOM, MAX_INT, touches, touches, entries),
            LobbyFrame(epoch, MAX_INT, MAX_INT, touches, touches, entries),
            SessionFrame(epoch, MAX_INT, MAX_INT, MAX_INT, entry, room),
        ]
        for message in frames:
            data = codec.encode(message, key=b"k" * 32)
            assert len(data) <= codec.MAX_FRAME, (type(message).__name__, len(data))
            assert codec.decode(data, key=b"k" * 32) == message


def test_a_clock_naming_too_many_servers_is_refused_at_submit() -> None:
    bus, servers = _wired_cluster(seed=16)
    (alice,) = _serving(bus, "alice")
    (leader,) = leaders(servers)
    clock = VectorClock({i: 1 for i in range(1, MAX_SERVERS + 2)})
    submit = Submit(alice.client_id, 9_999, SendChat(None, "alice", "hi", False), clock, 0.0)
    bus._post(alice.config.addr, leader.config.addr, submit)
    bus.run(0.2)
    (refusal,) = [m for _, dst, m in bus.sent if isinstance(m, OpError) and m.cmid == 9_999]
    assert f"at most {MAX_SERVERS}" in refusal.reason
    bus.submit(alice, SendChat(None, "alice", "and on we go", False))
    bus.run_until(lambda: chats(bus, alice) == ["and on we go"], 3)


def test_an_operation_whose_entry_would_not_fit_is_refused_with_a_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backstop behind the field limits: the sender learns why, nothing is recorded."""
    bus, servers = _wired_cluster(seed=17)
    alice, bob = _serving(bus, "alice", "bob")
    monkeypatch.setattr(codec, "MAX_ENTRY", 2_000)
    logged = len(leaders(servers)[0].log)
    cmid = bus.submit(alice, SendChat(None, "bob", "é" * 1_500, False))
    bus.run(0.3)
    (failed,) = [e for e in bus.events[alice.config.addr] if isinstance(e, OpFailed)]
    assert failed.cmid == cmid and "too large" in failed.reason and "2000" in failed.reason
    assert len(leaders(servers)[0].log) == logged
    bus.submit(alice, SendChat(None, "bob", "short", False))
    bus.run_until(lambda: chats(bus, bob) == ["short"], 3)


def test_a_client_whose_clocks_named_thousands_of_servers_still_logs_out_in_one_frame() -> None:
    """Each Submit's clock (64 made-up server ids at most) merges into what the leader
    records as the session's cursor when it logs out: 80 of them made a 90 KB UserOffline
    no Append could carry, and nothing committed again."""
    bus, servers = _wired_cluster(seed=18)
    mallory, alice, bob = _serving(bus, "mallory", "alice", "bob")
    (leader,) = leaders(servers)
    for n in range(80):
        clock = VectorClock({MAX_INT - n * MAX_SERVERS - i: MAX_INT for i in range(MAX_SERVERS)})
        op = SendChat(None, "alice", f"m{n}", False)
        bus._post(
            mallory.config.addr,
            leader.config.addr,
            Submit(mallory.client_id, 10_000 + n, op, clock, 0.0),
        )
    bus.run(0.1)
    bus.crash(mallory.config.addr)  # it times out: the leader records its UserOffline
    bus.run_until(lambda: "mallory" not in alice.users, 8)
    bus.submit(alice, SendChat(None, "bob", "after mallory", False))
    bus.run_until(lambda: chats(bus, bob)[-1:] == ["after mallory"], 3)
    assert not bus.oversized


def test_a_room_whose_member_list_would_not_fit_a_frame_refuses_the_next_join() -> None:
    """A room's members travel whole (RoomInfo in the joiner's frame and in Welcomes, a
    room frame's touches): 600 members with 32-character names of four-byte characters
    are ~70 KB, past the cap, although the count limit (1,000) allowed them. A join that
    would take the member list past its byte budget is refused with a reason."""
    bus, servers = _wired_cluster(seed=16)
    (alice,) = _serving(bus, "alice")
    (leader,) = leaders(servers)
    names = [("🙂" * 28) + f"{i:04d}" for i in range(600)]
    _sequence(bus, leader, [UserOnline(n, "127.0.0.1:1", f"id-{i}") for i, n in enumerate(names)])
    _sequence(bus, leader, [RoomJoined("hall", n) for n in names])
    bus.submit(alice, JoinRoom("hall"))
    bus.run(0.5)
    refused = [e for e in bus.events[alice.config.addr] if isinstance(e, OpFailed)]
    assert [e.reason for e in refused] == [
        f"room 'hall' is full: its member list is at its limit of {desk.MEMBER_LIST_BYTES} bytes"
    ]
    assert "hall" not in alice.rooms
    assert not bus.oversized
    # A room of short names takes a join as before.
    bus.submit(alice, JoinRoom("lobby2"))
    bus.run_until(lambda: "lobby2" in alice.rooms, 2)
