"""Real daemons and clients with encrypted sessions: pins, --cluster, status, --insecure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tchat.crypto.cluster import ClusterSecret
from tchat.crypto.known_clusters import KnownClusters
from tests.cluster_harness import Cluster

pytestmark = pytest.mark.timeout(120)


def pins(cluster: Cluster) -> KnownClusters:
    return KnownClusters.load(cluster.tmp / "data" / "tchat" / "known_clusters")


def label(cluster: Cluster) -> str:
    return f"127.255.255.255:{cluster.discovery_port}"


def test_a_client_pins_on_first_use_and_status_shows_the_key(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        cluster.daemon(server_id=1)
        alice = cluster.client("alice")
        alice.wait_event("ready", 20)
        pinned = pins(cluster).lookup(label(cluster))
        assert pinned is not None and pinned.key.fingerprint == cluster.fingerprint
        status = cluster.status()
        assert status is not None
        assert status["cluster"] == {
            "fingerprint": cluster.fingerprint,
            "pinned": pinned.key.fingerprint,
        }
        # Pinned: the next login checks against the pin and is served.
        alice.send("/quit")
        assert alice.wait_exit(10) == 0
        again = cluster.client("alice")
        again.wait_event("ready", 20)


def test_a_changed_cluster_key_stops_the_client_with_how_to_check(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        cluster.daemon(server_id=1)
        pins(cluster).pin(label(cluster), ClusterSecret.generate().public_key, datetime.now(UTC))
        mallory_was_here = cluster.client("alice")
        error = mallory_was_here.wait_event("error", 20, where=lambda e: e.get("fatal"))
        assert cluster.fingerprint in error["message"]
        assert "tchat status" in error["message"]
        assert mallory_was_here.wait_exit(10) == 2
        assert not mallory_was_here.of("ready")
        # --cluster with the right fingerprint: the user accepts the new key.
        accepted = cluster.client("alice", args=["--cluster", cluster.fingerprint])
        accepted.wait_event("ready", 20)
        pinned = pins(cluster).lookup(label(cluster))
        assert pinned is not None and pinned.key.fingerprint == cluster.fingerprint


def test_insecure_runs_plaintext_and_says_so(tmp_path: Path) -> None:
    with Cluster(tmp_path, extra=["--insecure"]) as cluster:
        daemon = cluster.daemon(server_id=1)
        alice = cluster.client("alice")
        alice.wait_event("ready", 20)
        alice.send("/join lobby")
        alice.wait_event("joined", 15, room="lobby")
        daemon.wait_line(r"WARNING.*RUNNING WITH --insecure", 5)
        alice.wait_line(r"WARNING.*RUNNING WITH --insecure", 5)
        assert not (tmp_path / "server-1" / "cluster.key").exists()
        assert pins(cluster).lookup(label(cluster)) is None
