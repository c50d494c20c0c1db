"""No number from a client is trusted: epochs, clocks and positions a client sends are
hints the core checks or bounds, never facts it adopts or stores (issue 13)."""

from __future__ import annotations

from core_bus import Bus

from tchat.core.client import ClientNode, ClientState
from tchat.core.effects import ChatDelivered
from tchat.core.messages import (
    Chat,
    ClientBeat,
    Dot,
    Entry,
    Epoch,
    LeaderAlive,
    LeaderSuspect,
    Logout,
    OpError,
    Origin,
    Register,
    SendChat,
    Submit,
    UserOffline,
)
from tchat.core.schema import MAX_INT, entry_problem
from tchat.core.server import ServerNode, ServerRole
from tchat.core.vclock import VectorClock

EVIL = "c-mallory"


def leaders(servers: list[ServerNode]) -> list[ServerNode]:
    return [s for s in servers if s.role is ServerRole.LEADER]


def settled(servers: list[ServerNode]) -> bool:
    found = leaders(servers)
    return len(found) == 1 and all(
        s.role is ServerRole.BACKUP and s.epoch == found[0].epoch
        for s in servers
        if s is not found[0]
    )


def cluster(ids: tuple[int, ...] = (5, 9, 3)) -> tuple[Bus, list[ServerNode]]:
    bus = Bus(seed=13)
    servers = [bus.add_server(i) for i in ids]
    bus.run_until(lambda: settled(servers), 5)
    return bus, servers


def serving(bus: Bus, *names: str) -> list[ClientNode]:
    clients = [bus.add_client(name) for name in names]
    bus.run_until(lambda: all(c.state is ClientState.SERVING for c in clients), 5)
    return clients


def terms(bus: Bus, servers: list[ServerNode]) -> dict[int, tuple[int, Epoch, int]]:
    """Each server's highest term and epoch, in memory and (the term) on its disk."""
    return {
        s.server_id: (s.max_term, s.epoch, bus.durable[s.config.addr].meta.get("term", 0))
        for s in servers
    }


def stored_entries(bus: Bus, servers: list[ServerNode]) -> list[Entry]:
    return [e for s in servers for e in bus.durable[s.config.addr].entries]


def test_a_clients_epoch_never_raises_a_servers_term() -> None:
    bus, servers = cluster()
    (leader,) = leaders(servers)
    before = terms(bus, servers)
    # Once, each server adopted this term: the next +1 could not be stored (SQLite), so
    # every server stopped, and again at its first election after a restart.
    for epoch in (Epoch(MAX_INT, 9), Epoch(2**40, leader.server_id)):
        for server in servers:
            bus._post(EVIL, server.config.addr, LeaderSuspect("mallory", EVIL, epoch))
    bus.run(1.0)
    assert terms(bus, servers) == before
    assert settled(servers) and leaders(servers) == [leader]
    # The leader answered for itself, every time; backups that hear it refused to suspect.
    alive = [m for _src, dst, m in bus.sent if dst == EVIL and isinstance(m, LeaderAlive)]
    assert len(alive) == 6 and {m.epoch for m in alive} == {leader.epoch}
    assert leader.counters.get("client-epoch-ignored") == 2

    # Fail-over still works, with the next term of the servers' own count.
    bus.crash(leader.config.addr)
    rest = [s for s in servers if s is not leader]
    bus.run_until(lambda: settled(rest), 10)
    (successor,) = leaders(rest)
    assert successor.epoch.term <= leader.epoch.term + 3


def test_a_client_that_knew_a_vanished_newer_leader_follows_the_one_that_leads() -> None:
    """DESIGN's liveness (PROTOCOL.md §5): a client whose newer leader is gone and that
    only finds an older one tells it so; it follows that leader on its own answer,
    without any server taking the client's number."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    (ann,) = serving(bus, "ann")
    before = terms(bus, servers)
    gone = Epoch(leader.epoch.term + 5, 77)  # led by a server nobody hears any more
    effects = ann._switch_leader(77, "s77", gone)
    bus._apply(ann.config.addr, effects)
    bus.run_until(lambda: ann.state is ClientState.SERVING and ann.epoch != gone, 30)
    assert (ann.leader_id, ann.epoch) == (leader.server_id, leader.epoch)
    assert terms(bus, servers) == before
    bus.submit(ann, SendChat(None, "ann", "still here", False))
    bus.run_until(lambda: not ann.pending, 3)


def poison(entries: int, known: tuple[int, ...] = ()) -> VectorClock:
    """A forged clock: ``entries`` servers nobody knows, and the ``known`` ones, each with
    a counter far past anything the log holds."""
    ids = [*known, *range(1_000, 1_000 + entries)]
    return VectorClock({sid: 10**12 for sid in ids})


def test_a_clients_clock_is_kept_only_as_far_as_the_log_knows_it() -> None:
    """Two private messages with 3,000-entry clocks to an offline user once poisoned the
    log: 72 KB replays, the user could never log in again, no new backup was admitted."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    alice, bob = serving(bus, "alice", "bob")
    bus.submit(bob, Logout())
    bus.run_until(lambda: "bob" not in alice.users, 2)
    ids = tuple(s.server_id for s in servers)
    forged = {
        10**6: poison(3_000),  # no honest client names 3,000 unknown servers: refused
        10**6 + 1: poison(8, ids),  # could be honest (a partition's other side): clamped
        10**6 + 2: poison(0, ids),
        10**6 + 3: poison(20),  # within MAX_SERVERS, but 20 servers nobody knows: refused
    }
    for cmid, clock in forged.items():
        op = SendChat(None, "bob", f"poison {cmid}", False)
        bus._post(
            alice.config.addr, leader.config.addr, Submit(alice.client_id, cmid, op, clock, 0.0)
        )
    # A forged cursor too: it becomes the session's cursor, stored when the session ends.
    bus._post(
        EVIL,
        leader.config.addr,
        Register("carol", "evil-session", EVIL, poison(60, ids), False, True, 1),
    )
    bus._post(EVIL, leader.config.addr, ClientBeat("evil-session", leader.epoch, MAX_INT))
    # Past the bounded causal wait, and past carol's client timeout (her UserOffline).
    bus.run(leader.config.timing.causal_wait + leader.config.timing.client_timeout + 2)

    errors = {
        m.cmid: m.reason
        for _src, dst, m in bus.sent
        if dst == alice.config.addr and isinstance(m, OpError)
    }
    # Refused before it counts anywhere: no cluster has 3,000 servers (MAX_SERVERS); and
    # a clock within that bound that names 20 servers nobody knows.
    assert sorted(errors) == [10**6, 10**6 + 3], errors
    assert "3000 servers" in errors[10**6]
    assert errors[10**6 + 3] == "your clock names 20 servers this cluster does not know"
    log_clock = leader.log.clock
    chats = [e for e in leader.log.entries() if isinstance(e.body, Chat) and e.body.to == "bob"]
    assert len(chats) == 2
    offline = [
        e
        for e in leader.log.entries()
        if isinstance(e.body, UserOffline) and e.body.name == "carol"
    ]
    assert offline, "carol's session timed out"
    for entry in stored_entries(bus, servers):
        body = entry.body
        for clock in (getattr(body, "sender_clock", None), getattr(body, "cursor", None)):
            if clock is not None:
                assert len(clock) <= len(servers) and clock <= log_clock, entry

    # Bob can log in again and gets both messages.
    (bob2,) = serving(bus, "bob")
    bus.run_until(
        lambda: sum(isinstance(e, ChatDelivered) for e in bus.events[bob2.config.addr]) == 2, 3
    )
    assert leader.leadership is not None and not leader.leadership.deferred


def test_an_entry_with_an_int_past_the_range_is_not_storable() -> None:
    def chat(sender_clock: VectorClock, counter: int = 1) -> Entry:
        return Entry(
            Dot(9, counter),
            VectorClock({9: counter}),
            0.0,
            Origin("c", 1),
            Chat("a", None, "b", "x", False, sender_clock),
        )

    assert entry_problem(chat(VectorClock({9: MAX_INT}), MAX_INT)) == ""
    assert "sender clock" in entry_problem(chat(VectorClock({9: MAX_INT + 1})))
    assert "sender clock" in entry_problem(chat(VectorClock({MAX_INT + 1: 1})))
    assert "dot" in entry_problem(chat(VectorClock(), MAX_INT + 1))
    assert VectorClock().highest() == 0 and VectorClock({3: 9, 12: 1}).highest() == 12


def test_a_joining_server_does_not_start_an_election_on_a_clients_word() -> None:
    bus, servers = cluster()
    (leader,) = leaders(servers)
    epoch = leader.epoch
    late = bus.add_server(2)  # joining: it has not heard of the leader yet
    assert late.role is ServerRole.JOINING and not late.leader_id
    suspect = LeaderSuspect("mallory", EVIL, Epoch(1, 9))
    bus._apply(late.config.addr, late.handle(suspect, EVIL, bus.now))
    bus.run_until(lambda: settled([*servers, late]), 5)
    assert leaders([*servers, late]) == [leader] and leader.epoch == epoch
    assert late.counters.get("suspicion-unfounded") == 1
