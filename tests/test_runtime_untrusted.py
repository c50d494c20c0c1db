"""Real daemons against numbers no client may make them adopt or store (issue 13)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from tchat.core.config import MAX_SERVER_ID, ServerConfig
from tchat.core.messages import (
    Ack,
    Epoch,
    LeaderSuspect,
    OpError,
    Register,
    SendChat,
    Submit,
    Welcome,
)
from tchat.core.schema import MAX_INT
from tchat.core.vclock import VectorClock
from tchat.runtime.store import DB_NAME, SqliteStore, UnstorableValue
from tests.cluster_harness import Cluster, Daemon, wait_for
from tests.wire_attacker import Session

pytestmark = pytest.mark.timeout(120)


def term(status: dict[str, object] | None) -> int:
    assert status is not None, "nobody answered tchat status"
    return int(str(status["epoch"]).split(":")[0])


def suspect_as_a_client(daemon: Daemon, epoch: Epoch) -> None:
    """Open a session as a client does (HELLO, then length-prefixed frames) and report
    the leader silent, claiming ``epoch``."""
    with Session(daemon.addr) as session:
        session.send(LeaderSuspect("mallory", session.addr, epoch))
        session.sock.settimeout(5)
        # A frame out of range is dropped and the daemon hangs up; any other is answered
        # (LeaderAlive: the daemon says who leads). Either ends the wait.
        with contextlib.suppress(TimeoutError, OSError):
            session.sock.recv(65536)


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


def test_a_forged_sender_clock_does_not_poison_the_log(tmp_path: Path) -> None:
    # Once: two private messages with 3,000-entry clocks to an offline user made every
    # replay of that user 72 KB; the user could never log in again.
    with Cluster(tmp_path) as cluster:
        daemons = [cluster.daemon(server_id=i, wait=False) for i in (1, 2, 3)]
        daemons = [d.started() for d in daemons]
        bob = cluster.client("bob")
        bob.wait_event("ready", 15)
        bob.send("/quit")
        assert bob.wait_exit(10) == 0
        leader = cluster.leader_of(daemons)
        raw = Session(leader.addr)  # a client's encrypted session, by hand
        try:
            raw.send(Register("mallory", "mallory-1", raw.addr, None, False, False, 1))
            raw.until(lambda m: isinstance(m, Welcome))
            known = {d.server_id: 10**12 for d in daemons}
            clocks = {
                1: VectorClock({**known, **{sid: 10**12 for sid in range(1_000, 4_000)}}),
                2: VectorClock(known),  # could be honest: clamped to what the log holds
            }
            for cmid, clock in clocks.items():
                op = SendChat(None, "bob", f"to bob {cmid}", False)
                raw.send(Submit("mallory-1", cmid, op, clock, 0.0))
            refused = raw.until(lambda m: isinstance(m, OpError))
            assert isinstance(refused, OpError) and refused.cmid == 1
            assert "3003 servers" in refused.reason, refused.reason
            # The other waits out the causal wait (its clock runs past the log), then is
            # sequenced with its clock clamped.
            raw.until(lambda m: isinstance(m, Ack) and m.cmid == 2)
        finally:
            raw.close()
        bob = cluster.client("bob")
        got = bob.wait_event("message", 15, text="to bob 2")
        assert set(got["clock"]) <= {str(d.server_id) for d in daemons}
        assert max(got["clock"].values()) < 10**6
        assert not [e for e in bob.events if e.get("text") == "to bob 1"]
        # A new backup is admitted (the poisoned log once kept it out).
        late = cluster.daemon(server_id=4)
        wait_for(
            lambda: (
                {s["id"] for s in (cluster.status() or {"servers": []})["servers"] if s["live"]}
                == {1, 2, 3, 4}
            ),
            15,
            "server 4 admitted",
        )
        assert all(d.alive() for d in [*daemons, late])
