"""Real daemons whose log is mostly on disk (a tiny hot window): scrollback, replay, failover
and restart read old entries from SQLite; the room limits are refused with their reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster_harness import Cluster, wait_for

pytestmark = pytest.mark.timeout(90)


def test_a_log_mostly_on_disk_serves_history_failover_and_restart(tmp_path: Path) -> None:
    (tmp_path / "config" / "tchat").mkdir(parents=True)
    (tmp_path / "config" / "tchat" / "config.toml").write_text(
        "hot_entries = 8\nmax_room_members = 2\n"
    )
    with Cluster(tmp_path) as cluster:
        daemons = [cluster.daemon(server_id=i, wait=False) for i in (1, 2)]
        for d in daemons:
            d.started()
        alice = cluster.client("alice")
        alice.wait_event("ready", 15)
        alice.send("/join lobby")
        alice.wait_event("joined", room="lobby")
        for i in range(40):
            alice.send(f"/say lobby old {i}")
        wait_for(lambda: len(alice.of("sent")) >= 40, 20, "40 acks")
        bob = cluster.client("bob")
        bob.wait_event("ready", 15)
        bob.send("/join lobby")
        bob.wait_event("joined", room="lobby")
        bob.send("/history lobby 30")
        history = bob.wait_event("history", 10)
        assert [m["text"] for m in history["messages"]] == [f"old {i}" for i in range(10, 40)]
        # The room is full at two members: a third is refused, with the reason.
        carol = cluster.client("carol")
        carol.wait_event("ready", 15)
        carol.send("/join lobby")
        error = carol.wait_event("error", 10)
        assert error["message"] == "room 'lobby' is full (2 members)"

        # The leader dies: the new one (a backup whose log is on its disk) takes office
        # and serves the same history; then the old one restarts and catches up.
        leader = cluster.leader_of(daemons)
        leader.kill()
        survivor = next(d for d in daemons if d is not leader)
        wait_for(lambda: cluster.leader_of([survivor]) is survivor, 15, "a new leader")
        alice.send("/say lobby after failover")
        wait_for(lambda: len(alice.of("sent")) >= 41, 20, "the ack after failover")
        wait_for(
            lambda: any(m["text"] == "after failover" for m in bob.of("message")), 10, "delivery"
        )
        texts = [m["text"] for m in bob.of("message") if m["from"] == "alice"]
        assert texts.count("after failover") == 1
        restarted = cluster.daemon(server_id=leader.server_id, data_dir=leader.data_dir)
        assert restarted.alive()
        bob.send("/history lobby 5")
        wait_for(lambda: len(bob.of("history")) >= 2, 10, "second history")
        last = bob.of("history")[-1]
        assert [m["text"] for m in last["messages"]] == [
            *[f"old {i}" for i in range(36, 40)],
            "after failover",
        ]
