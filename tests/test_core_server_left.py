"""A server that stops gracefully leaves every list; a crashed one stays, bounded (issue 16)."""

from __future__ import annotations

from test_core_nodes import cluster, leaders, settled

from tchat.core.messages import MAX_SERVERS, ElectionAck, ServerLeft
from tchat.core.server import ServerNode


def listed(server: ServerNode) -> list[int]:
    return [info.server_id for info in server.servers]


def left_entries(server: ServerNode) -> list[int]:
    return [e.body.server_id for e in server.log.entries() if isinstance(e.body, ServerLeft)]


def test_a_backup_that_stops_gracefully_is_gone_from_every_server() -> None:
    bus, servers = cluster(ids=(5, 9, 3))
    backup = next(s for s in servers if s.server_id == 3)
    bus._apply(backup.config.addr, backup.stop(bus.now))
    rest = [s for s in servers if s is not backup]
    bus.run_until(lambda: all(listed(s) == [5, 9] for s in rest), 2)
    assert all(left_entries(s) == [3] for s in rest)
    assert all(3 not in s.ring() for s in rest)


def test_a_leader_that_stops_gracefully_is_gone_once_its_successor_leads() -> None:
    bus, servers = cluster(ids=(5, 9, 3))
    (old,) = leaders(servers)
    bus._apply(old.config.addr, old.stop(bus.now))
    rest = [s for s in servers if s is not old]
    bus.run_until(lambda: settled(rest), 2)
    bus.run_until(lambda: all(listed(s) == [3, 5] for s in rest), 2)
    assert all(left_entries(s) == [9] for s in rest)


def test_a_server_that_left_and_returns_is_listed_again() -> None:
    bus, servers = cluster(ids=(5, 9, 3))
    backup = next(s for s in servers if s.server_id == 3)
    bus._apply(backup.config.addr, backup.stop(bus.now))
    rest = [s for s in servers if s is not backup]
    bus.run_until(lambda: all(listed(s) == [5, 9] for s in rest), 2)
    again = bus.add_server(3)
    everyone = [*rest, again]
    bus.run_until(lambda: settled(everyone), 5)
    bus.run_until(lambda: all(listed(s) == [3, 5, 9] for s in everyone), 2)


def test_a_crashed_server_stays_listed_as_down() -> None:
    bus, servers = cluster(ids=(5, 9, 3))
    backup = next(s for s in servers if s.server_id == 3)
    bus.crash(backup.config.addr)
    bus.run(2.0)
    rest = [s for s in servers if s is not backup]
    assert all(listed(s) == [3, 5, 9] for s in rest)
    assert all(3 not in s.live_backups for s in rest)
    assert not any(left_entries(s) for s in rest)


def test_the_table_of_known_servers_is_bounded() -> None:
    bus, servers = cluster(ids=(5, 9, 3))
    (leader,) = leaders(servers)
    # Cluster servers that came and went under fresh IDs (each frame is authenticated
    # in the runtime; here they just arrive): the table keeps at most MAX_SERVERS.
    for sid in range(1000, 1000 + 3 * MAX_SERVERS):
        ack = ElectionAck(sid, 0, sid)
        addr = f"10.9.{sid // 256}.{sid % 256}:1"
        bus._apply(leader.config.addr, leader.handle(ack, addr, bus.now))
    assert len(leader.peers) <= MAX_SERVERS
    assert len(leader.peer_heard) <= 2 * MAX_SERVERS
    # The servers the log names are never the ones forgotten.
    assert {3, 5} <= set(leader.peers)


def test_a_leaving_heard_while_following_is_not_logged_after_the_server_came_back() -> None:
    bus, servers = cluster(ids=(5, 9, 3))
    (old,) = leaders(servers)
    bus._apply(old.config.addr, old.stop(bus.now))
    rest = [s for s in servers if s is not old]
    bus.run_until(lambda: settled(rest) and all(listed(s) == [3, 5] for s in rest), 3)
    third = next(s for s in rest if s.server_id == 3)
    assert not third.candidacy.left  # its leader logged the Leaving: nothing kept for later
    back = bus.add_server(9)
    everyone = [*rest, back]
    bus.run_until(lambda: settled(everyone), 5)
    bus.run_until(lambda: all(listed(s) == [3, 5, 9] for s in everyone), 3)
    (leader,) = leaders(everyone)
    bus.crash(leader.config.addr)  # the next election must not log 9 as left again
    survivors = [s for s in everyone if s is not leader]
    bus.run_until(lambda: settled(survivors), 5)
    bus.run(0.5)
    assert all(left_entries(s).count(9) == 1 for s in survivors)
