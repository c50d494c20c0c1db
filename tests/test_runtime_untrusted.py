"""Real daemons against numbers no client may make them adopt or store (issue 13)."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
from pathlib import Path

import pytest

from tchat.core import codec
from tchat.core.config import MAX_SERVER_ID, ServerConfig
from tchat.core.messages import Epoch, LeaderSuspect
from tchat.core.schema import MAX_INT
from tchat.runtime.session import HELLO
from tchat.runtime.store import DB_NAME, SqliteStore, UnstorableValue
from tests.cluster_harness import Cluster, Daemon, wait_for

pytestmark = pytest.mark.timeout(120)


def term(status: dict[str, object] | None) -> int:
    assert status is not None, "nobody answered tchat status"
    return int(str(status["epoch"]).split(":")[0])


def suspect_as_a_client(daemon: Daemon, epoch: Epoch) -> None:
    """Open a session as a client does (HELLO, then length-prefixed frames) and report
    the leader silent, claiming ``epoch``."""
    host, port = daemon.addr.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        local_host, local_port = sock.getsockname()[:2]
        me = f"{local_host}:{local_port}"
        sock.sendall(codec.frame(HELLO + me.encode()))
        sock.sendall(codec.frame(codec.encode(LeaderSuspect("mallory", me, epoch))))
        sock.settimeout(5)
        # A frame out of range is dropped and the daemon hangs up; any other is answered
        # (LeaderAlive: the daemon says who leads). Either ends the wait.
        with contextlib.suppress(TimeoutError, OSError):
            sock.recv(65536)


def test_a_forged_leader_suspect_neither_stops_nor_moves_the_cluster(tmp_path: Path) -> None:
    # Once: one LeaderSuspect with term 2**63 - 1 to each server stopped all three daemons
    # ("int too large to convert to SQLite INTEGER"), and after a restart the backups
    # stopped again at their first election, because the term had been stored.
    with Cluster(tmp_path, key="sekrit") as cluster:
        daemons = [cluster.daemon(server_id=i, wait=False) for i in (1, 2, 3)]
        daemons = [d.started() for d in daemons]
        alice = cluster.client("alice")
        alice.wait_event("ready", 15)
        leader = cluster.leader_of(daemons)
        wait_for(lambda: len((cluster.status() or {}).get("servers", [])) == 3, 10, "3 servers")
        before = term(cluster.status())

        for daemon in daemons:
            # Past the protocol's range (dropped), then in range (a client's hint, ignored).
            suspect_as_a_client(daemon, Epoch(2**63 - 1, 3))
            suspect_as_a_client(daemon, Epoch(2**52, 3))
        wait_for(
            lambda: (
                not all(d.alive() for d in daemons)
                or all(d.drop_count("invalid-field") >= 1 for d in daemons)
            ),
            10,
            "every daemon dropping the out-of-range frame",
        )
        assert all(d.alive() for d in daemons), "a forged frame stopped a daemon"
        assert term(cluster.status()) == before
        assert cluster.leader_of(daemons) is leader

        # The cluster still elects, with its own next term, and serves.
        leader.kill()
        rest = [d for d in daemons if d is not leader]
        new_leader = cluster.leader_of(rest, timeout=20)
        assert new_leader is not leader
        assert before < term(cluster.status()) <= before + 3
        alice.wait_event("leader", 15, where=lambda e: e["leader"] == new_leader.server_id)
        alice.send("/join lobby")
        alice.wait_event("joined", 15, room="lobby")
        alice.send("/say lobby still serving")
        alice.wait_event("message", 15, text="still serving")
        assert all(d.alive() for d in rest)


def test_a_stored_term_past_the_protocols_range_is_ignored_at_load(tmp_path: Path) -> None:
    # A data dir the old bug wrote (term 2**63 - 1): a server kept it and could never
    # elect again (its next term was unstorable).
    with SqliteStore(tmp_path) as store:
        store.set_meta("epoch_term", 4)
        store.commit()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("INSERT INTO meta (key, value) VALUES ('term', ?)", (2**63 - 1,))
    with SqliteStore(tmp_path) as store:
        assert store.load().meta == {"epoch_term": 4}
        with pytest.raises(UnstorableValue):
            store.set_meta("term", 2**63)


def test_server_ids_are_protocol_ints() -> None:
    assert MAX_SERVER_ID == MAX_INT
    for bad in (0, MAX_INT + 1):
        with pytest.raises(ValueError, match="server ID"):
            ServerConfig(bad, "127.0.0.1:1")
    assert ServerConfig(MAX_INT, "127.0.0.1:1").server_id == MAX_INT
