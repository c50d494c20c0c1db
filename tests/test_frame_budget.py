"""Every frame a node builds fits the frame cap whatever its entries weigh: batches, chunks
and runs are split by encoded bytes, never by a count alone (core nodes on the in-memory
bus, every message through the real codec and its cap)."""

from __future__ import annotations

from core_bus import Bus
from test_core_nodes import chats, leaders, settled

from tchat.core.client import ClientNode, ClientState
from tchat.core.effects import HistoryLoaded
from tchat.core.messages import MAX_TEXT, JoinRoom, Logout, SendChat
from tchat.core.server import ServerNode


def _big_text(i: int) -> str:
    """A text of MAX_TEXT characters, mostly multi-byte: ~12 KB of UTF-8."""
    head = f"{i:04d} "
    return head + ("é🙂x🙂" * MAX_TEXT)[: MAX_TEXT - len(head)]


def _wired_cluster(seed: int) -> tuple[Bus, list[ServerNode]]:
    bus = Bus(seed=seed, wire=True)
    servers = [bus.add_server(i) for i in (5, 9, 3)]
    bus.run_until(lambda: settled(servers), 5)
    return bus, servers


def _serving(bus: Bus, *names: str, **config: object) -> list[ClientNode]:
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
