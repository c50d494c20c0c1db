"""Issue 15's attacks on the cluster over TCP, by a LAN host speaking as a client: each
one worked on the tree before (30fb81c); now a client session cannot speak as a server."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from tchat.core.messages import (
    NO_EPOCH,
    Epoch,
    Heartbeat,
    JoinRequest,
    NewLeader,
    ServerInfo,
    StepDown,
)
from tchat.core.vclock import VectorClock
from tests.cluster_harness import Cluster, Daemon, wait_for
from tests.wire_attacker import Session

pytestmark = pytest.mark.timeout(120)


def epoch_of(status: dict[str, object] | None) -> Epoch:
    assert status is not None, "nobody answered tchat status"
    term, leader = str(status["epoch"]).split(":")[:2]
    return Epoch(int(term), int(leader))


def three(cluster: Cluster) -> tuple[list[Daemon], Daemon]:
    daemons = [cluster.daemon(server_id=i, wait=False) for i in (1, 2, 3)]
    daemons = [d.started() for d in daemons]
    leader = cluster.leader_of(daemons)
    wait_for(lambda: len((cluster.status() or {}).get("servers", [])) == 3, 15, "3 servers")
    return daemons, leader


def refused_or_moved(cluster: Cluster, daemons: list[Daemon], count: int, before: Epoch):
    """Wait until every daemon counted ``count`` refused frames, or the cluster moved."""

    def done() -> bool:
        if all(d.drop_count("not-a-server") >= count for d in daemons):
            return True
        status = cluster.status(0.3)
        return status is not None and epoch_of(status) != before

    wait_for(done, 15, "the forged frames refused (or obeyed)")


def test_a_forged_new_leader_is_not_followed(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemons, leader = three(cluster)
        before = epoch_of(cluster.status())
        for daemon in daemons:
            with Session(daemon.addr) as mallory:
                huge = Epoch(2**40, 666)
                mallory.send(NewLeader(666, mallory.addr, huge, (ServerInfo(666, mallory.addr),)))
                mallory.sock.settimeout(1)
                refused_or_moved(cluster, [daemon], 1, before)
        assert epoch_of(cluster.status()) == before
        assert cluster.leader_of(daemons) is leader
        assert all(d.alive() for d in daemons)


def test_a_forged_step_down_forces_no_failover(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemons, leader = three(cluster)
        before = epoch_of(cluster.status())
        backups = [d for d in daemons if d is not leader]
        for daemon in backups:
            with Session(daemon.addr) as mallory:
                mallory.send(StepDown(leader.server_id, before))
                refused_or_moved(cluster, [daemon], 1, before)
        assert epoch_of(cluster.status()) == before
        assert cluster.leader_of(daemons) is leader


def test_forged_join_requests_leave_no_phantom_servers(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemons, leader = three(cluster)
        before = epoch_of(cluster.status())
        with Session(leader.addr) as mallory:
            host = mallory.addr.rsplit(":", 1)[0]
            for i in range(100):
                mallory.send(JoinRequest(1000 + i, f"{host}:{20000 + i}", NO_EPOCH, VectorClock()))

            def settled() -> bool:
                # The log names the first 20 drops of a reason (then every 1000th).
                if leader.drop_count("not-a-server") >= 20:
                    return True
                return len((cluster.status(0.3) or {}).get("servers", [])) > 3

            wait_for(settled, 20, "the JoinRequests refused (or admitted)")
        status = cluster.status()
        assert len((status or {}).get("servers", [])) == 3, status
        assert epoch_of(status) == before


def test_a_replayed_heartbeat_does_not_block_failover(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemons, leader = three(cluster)
        before = epoch_of(cluster.status())
        backups = [d for d in daemons if d is not leader]
        servers = tuple(ServerInfo(d.server_id, d.addr) for d in daemons)
        beat = Heartbeat(leader.server_id, leader.addr, before, 10**6, servers)
        sessions = [Session(d.addr) for d in backups]
        try:
            leader.kill()
            killed = time.monotonic()
            new_leader: Daemon | None = None
            for i in range(500):  # the replay every 30 ms (its pace), for at most 15 s
                for session in sessions:
                    with contextlib.suppress(OSError):
                        session.send(beat)
                time.sleep(0.03)
                status = cluster.status(0.1) if i % 10 == 9 else None
                if status and status.get("leader") not in (None, leader.server_id):
                    new_leader = next(d for d in backups if d.server_id == status["leader"])
                    break
            assert new_leader is not None, "the replayed heartbeat kept the dead leader"
            assert time.monotonic() - killed < 15
        finally:
            for session in sessions:
                session.close()
