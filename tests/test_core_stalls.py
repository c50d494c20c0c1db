"""A node that was itself stalled (a GC pause, a starved CPU) reads what waited for it
before it calls anyone else silent: its overdue timer runs first, as in an event loop."""

from __future__ import annotations

from core_bus import Bus
from test_core_nodes import leaders, serving, settled

from tchat.core.client import ClientState
from tchat.core.config import ClientConfig, Timing
from tchat.core.effects import ConnectionChanged
from tchat.core.server import ServerNode


def timed_cluster(timing: Timing) -> tuple[Bus, list[ServerNode]]:
    bus = Bus(seed=3)
    servers = [bus.add_server(i, timing=timing) for i in (5, 9, 3)]
    bus.run_until(lambda: settled(servers), 5)
    bus.run(1.0)
    return bus, servers


def pause(bus: Bus, addr: str, seconds: float) -> list[tuple[str, str]]:
    """Stall ``addr`` for ``seconds``, wake it, run on; the node events logged meanwhile."""
    since = len(bus.logs)
    bus.paused.add(addr)
    bus.run(seconds)
    bus.resume(addr)
    bus.run(1.0)
    return bus.logs[since:]


def test_a_stalled_leader_reads_its_backups_before_it_drops_them() -> None:
    # The backups wait long for the leader; the leader waits 0.25 s for them.
    bus, servers = timed_cluster(Timing(leader_timeout=2.0, backup_timeout=0.25))
    (leader,) = leaders(servers)
    epoch = leader.epoch
    logs = pause(bus, leader.config.addr, 0.5)
    assert leader.counters.get("late-wakeup", 0) >= 1
    assert [kind for _, kind in logs if kind == "server-dropped"] == []
    assert leader.live_backups == {3, 5}
    assert leaders(servers) == [leader] and leader.epoch == epoch


def test_a_stalled_backup_reads_the_leaders_beats_before_it_suspects_it() -> None:
    bus, servers = timed_cluster(Timing(leader_timeout=0.25, backup_timeout=2.0))
    (leader,) = leaders(servers)
    backup = next(s for s in servers if s is not leader)
    epoch = leader.epoch
    logs = pause(bus, backup.config.addr, 0.5)
    assert backup.counters.get("late-wakeup", 0) >= 1
    assert [kind for _, kind in logs if kind in ("leader-suspected", "election-started")] == []
    assert leaders(servers) == [leader] and all(s.epoch == epoch for s in servers)


def test_a_stalled_client_reads_the_leaders_beats_before_it_suspects_it() -> None:
    bus, servers = timed_cluster(Timing())
    (alice,) = serving(bus, "alice")
    assert isinstance(alice.config, ClientConfig)
    leader_id = alice.leader_id
    bus.run(1.0)
    seen = len(bus.events[alice.config.addr])
    pause(bus, alice.config.addr, alice.config.timing.client_leader_timeout + 0.5)
    moves = [e for e in bus.events[alice.config.addr][seen:] if isinstance(e, ConnectionChanged)]
    assert moves == [], "it never left SERVING"
    assert alice.state is ClientState.SERVING and alice.leader_id == leader_id
