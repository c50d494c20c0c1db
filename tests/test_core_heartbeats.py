"""Client heartbeats at scale: one LobbyBeat per round for every multicast client, a
ClientHeartbeat only where a channel moved, and the probe that covers lost LobbyBeats."""

from __future__ import annotations

from core_bus import Bus
from test_core_nodes import chats, cluster, leaders, serving

from tchat.core.client import ClientState
from tchat.core.messages import (
    ClientBeat,
    ClientHeartbeat,
    JoinRoom,
    LobbyBeat,
    Message,
    RoomFrame,
    SendChat,
)
from tchat.core.stream import BEAT_SLOTS, Session


def from_leader(
    bus: Bus, leader: str, since: int, kind: type[Message]
) -> list[tuple[str, Message]]:
    return [(dst, m) for src, dst, m in bus.sent[since:] if src == leader and isinstance(m, kind)]


def test_idle_multicast_clients_get_one_lobby_beat_per_round_and_no_session_heartbeats() -> None:
    bus, servers = cluster()
    leader = leaders(servers)[0]
    clients = serving(bus, "alice", "bob", "carol")
    bus.run(2.0)  # logins settle: their frames are old news
    since = len(bus.sent)
    bus.run(3.0)
    beats = from_leader(bus, leader.config.addr, since, LobbyBeat)
    per_client = {c.config.addr: sum(dst == c.config.addr for dst, _ in beats) for c in clients}
    rounds = 3.0 / leader.config.timing.client_heartbeat_interval
    assert all(rounds - 1 <= n <= rounds + 1 for n in per_client.values()), per_client
    assert from_leader(bus, leader.config.addr, since, ClientHeartbeat) == []
    assert all(c.state is ClientState.SERVING for c in clients)
    # The clients still beat, three times per client_timeout, none of them a probe.
    client_beats = [m for src, _, m in bus.sent[since:] if isinstance(m, ClientBeat)]
    assert 3 * 2 <= len(client_beats) <= 3 * 4 and not any(b.probe for b in client_beats)


def test_a_room_message_earns_its_members_one_session_heartbeat_with_the_new_head() -> None:
    bus, servers = cluster()
    leader = leaders(servers)[0]
    alice, bob, carol = serving(bus, "alice", "bob", "carol")
    for client in (alice, bob):
        bus.submit(client, JoinRoom("ops"))
    bus.run_until(lambda: all("ops" in c.rooms for c in (alice, bob)), 3)
    bus.run(2.0)
    since = len(bus.sent)
    bus.submit(alice, SendChat("ops", None, "hi", False))
    bus.run(2.0)
    assert chats(bus, bob) == ["hi"]
    hearts = from_leader(bus, leader.config.addr, since, ClientHeartbeat)
    assert sorted(dst for dst, _ in hearts) == sorted([alice.config.addr, bob.config.addr])
    assert leader.leadership is not None
    head = leader.leadership.streams.room_last["ops"]
    for _, beat in hearts:
        assert isinstance(beat, ClientHeartbeat)
        assert dict((t.name, t.gsn) for t in beat.room_heads)["ops"] == head


def test_a_unicast_client_gets_a_session_heartbeat_every_round() -> None:
    bus, servers = cluster()
    leader = leaders(servers)[0]
    (uni,) = [bus.add_client("uni", multicast=False)]
    bus.run_until(lambda: uni.state is ClientState.SERVING, 5)
    since = len(bus.sent)
    bus.run(3.0)
    hearts = from_leader(bus, leader.config.addr, since, ClientHeartbeat)
    rounds = 3.0 / leader.config.timing.client_heartbeat_interval
    assert rounds - 1 <= sum(dst == uni.config.addr for dst, _ in hearts) <= rounds + 1
    assert not [dst for dst, _ in from_leader(bus, leader.config.addr, since, LobbyBeat)]
    assert uni.state is ClientState.SERVING


def test_a_client_that_loses_every_lobby_beat_probes_and_keeps_its_leader() -> None:
    bus, servers = cluster()
    leader = leaders(servers)[0]
    (alice,) = serving(bus, "alice")
    bus.run(1.0)
    addr = alice.config.addr
    bus.drop = lambda src, dst, m: dst == addr and isinstance(m, LobbyBeat)
    since = len(bus.sent)
    bus.run(6.0)
    probes = [m for src, _, m in bus.sent[since:] if src == addr and isinstance(m, ClientBeat)]
    assert [p for p in probes if p.probe], "silence past the probe time asks the leader"
    replies = [d for d, _ in from_leader(bus, leader.config.addr, since, ClientHeartbeat)]
    assert addr in replies
    assert alice.state is ClientState.SERVING and alice.leader_id == leader.server_id
    assert leaders(servers) == [leader]


def test_a_lost_frame_and_the_heartbeat_after_it_are_found_by_the_clients_beat() -> None:
    bus, servers = cluster()
    alice, bob = serving(bus, "alice", "bob")
    for client in (alice, bob):
        bus.submit(client, JoinRoom("ops"))
    bus.run_until(lambda: all("ops" in c.rooms for c in (alice, bob)), 3)
    bus.run(2.0)
    lost: list[Message] = []

    def drop(src: str, dst: str, m: Message) -> bool:
        # The room frame and the one heartbeat that would reveal it, both to bob, once each.
        kinds = {type(x) for x in lost}
        wanted = isinstance(m, RoomFrame | ClientHeartbeat) and type(m) not in kinds
        if dst == bob.config.addr and wanted:
            lost.append(m)
            return True
        return False

    bus.drop = drop
    since = len(bus.sent)
    bus.submit(alice, SendChat("ops", None, "hi", False))
    bus.run_until(lambda: chats(bus, bob) == ["hi"], 5)
    assert {type(m) for m in lost} == {RoomFrame, ClientHeartbeat}
    # bob's beat said how far it got, and the leader answered with the heads.
    beats = [m for src, _, m in bus.sent[since:] if src == bob.config.addr]
    assert any(isinstance(m, ClientBeat) and not m.probe for m in beats)


def test_lobby_beats_are_numbered_per_epoch_and_a_new_leader_numbers_afresh() -> None:
    """Each beat of a leader is distinct and ordered (issue 15: a replay is an equal or
    older one); a new leader starts again at 1 under its new epoch, and is believed."""
    bus, servers = cluster()
    (alice,) = serving(bus, "alice")
    (old,) = leaders(servers)
    since = len(bus.sent)
    bus.run(2.0)
    numbers = [m.beat for _, m in from_leader(bus, old.config.addr, since, LobbyBeat)]  # type: ignore[attr-defined]
    assert len(numbers) >= 3 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert alice.counters == {}
    # An older beat of this epoch arriving late (or replayed) is dropped and counted.
    late = LobbyBeat(old.epoch, old.server_id, 0, 0, numbers[-2])
    alice.handle(late, old.config.addr, bus.now)
    assert alice.counters == {"replayed-beat": 1}
    bus.crash(old.config.addr)
    since = len(bus.sent)
    bus.run_until(lambda: alice.state is ClientState.SERVING and alice.epoch > old.epoch, 5)
    (new,) = leaders([s for s in servers if s is not old])
    bus.run(2.0)
    fresh = [m.beat for _, m in from_leader(bus, new.config.addr, since, LobbyBeat)]  # type: ignore[attr-defined]
    assert fresh[0] == 1 and fresh[0] < numbers[-1], (fresh, numbers)  # afresh, at 1
    assert alice.counters == {"replayed-beat": 1} and alice.state is ClientState.SERVING


def beats_per_step(
    bus: Bus, leader_addr: str, seconds: float
) -> tuple[list[int], dict[str, list[float]]]:
    """Step the bus for ``seconds``: the ClientHeartbeats the leader sent in each of its
    steps, and when each client got one."""
    per_step: list[int] = []
    when: dict[str, list[float]] = {}
    end = bus.now + seconds
    for _ in range(200_000):
        if bus.now >= end:
            break
        before = len(bus.sent)
        assert bus.step()
        sent = [(d, m) for s, d, m in bus.sent[before:] if s == leader_addr]
        hearts = [d for d, m in sent if isinstance(m, ClientHeartbeat)]
        if hearts:
            per_step.append(len(hearts))
            for dst in hearts:
                when.setdefault(dst, []).append(bus.now)
    return per_step, when


def test_session_heartbeats_are_spread_over_the_interval_not_sent_in_one_burst() -> None:
    """Every round the leader beat every unicast session in one step: with hundreds of
    clients, encrypting and sending that burst stalled its loop (and theirs) and a login
    landing in it waited (issue 15's login p99). Each session now has one of BEAT_SLOTS
    slots and a step beats one slot; each client still hears from it once per interval."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    interval = leader.config.timing.client_heartbeat_interval
    clients = [bus.add_client(f"u{i:02}", multicast=False) for i in range(40)]
    bus.run_until(lambda: all(c.state is ClientState.SERVING for c in clients), 10)
    bus.run(1.0)
    per_step, when = beats_per_step(bus, leader.config.addr, 3.0)
    assert max(per_step) <= len(clients) // BEAT_SLOTS + 1, per_step
    addrs = {c.config.addr for c in clients}
    assert set(when) == addrs
    for addr in sorted(addrs):
        times = when[addr]
        rounds = 3.0 / interval
        assert rounds - 1 <= len(times) <= rounds + 1, (addr, times)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # Once per interval, as before: client_leader_timeout (3 intervals) still holds.
        assert max(gaps) <= interval * 1.05, (addr, gaps)
    assert all(c.state is ClientState.SERVING for c in clients)


def test_slots_stay_balanced_as_sessions_come_and_go() -> None:
    """A slot is given to the emptiest slot (round-robin among equals), so logouts in one
    slot and logins after them cannot pile most sessions into one step."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    assert leader.leadership is not None
    streams = leader.leadership.streams
    for i in range(50):
        streams.attach(Session(f"n{i}", f"c{i}", f"a{i}", False, bus.now))
    assert sorted(len(s) for s in streams.beat_slots) == [5] * BEAT_SLOTS
    # Every session of the first slot leaves; the next ten logins refill it first.
    gone = sorted(streams.beat_slots[0])
    for client_id in gone:
        streams.detach(client_id)
    for i in range(50, 50 + len(gone)):
        streams.attach(Session(f"n{i}", f"c{i}", f"a{i}", False, bus.now))
    assert sorted(len(s) for s in streams.beat_slots) == [5] * BEAT_SLOTS
    # A session attached again under its client ID replaces the old one in its slot.
    streams.attach(Session("n1", "c1", "a1", False, bus.now))
    assert sum(len(s) for s in streams.beat_slots) == len(streams.sessions) == 50
    assert sorted(c for s in streams.beat_slots for c in s) == sorted(streams.sessions)


def test_a_room_message_earns_each_of_many_members_one_heartbeat_in_its_own_slot() -> None:
    """'Only when moved' holds per slot: each slot remembers the gsn it was last beaten at,
    so every member of a room (spread over the slots) gets exactly one ClientHeartbeat
    naming the room's new head, in its slot's step, and none in the rounds after."""
    bus, servers = cluster()
    (leader,) = leaders(servers)
    members = [bus.add_client(f"m{i:02}") for i in range(30)]
    bus.run_until(lambda: all(c.state is ClientState.SERVING for c in members), 10)
    for client in members:
        bus.submit(client, JoinRoom("ops"))
    bus.run_until(lambda: all("ops" in c.rooms and not c.pending for c in members), 5)
    bus.run(2.0)  # the joins' heartbeats are out: nothing moves now
    bus.submit(members[0], SendChat("ops", None, "hi", False))
    per_step, when = beats_per_step(bus, leader.config.addr, 2.0)
    assert all(chats(bus, c) == ["hi"] for c in members)
    assert sorted(when) == sorted(c.config.addr for c in members)
    assert all(len(times) == 1 for times in when.values()), when
    assert max(per_step) <= len(members) // BEAT_SLOTS + 1, per_step
