"""Room topics end to end: real daemons, headless clients over multicast and over a session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster_harness import Cluster
from tests.test_runtime_cluster import ready, start_daemons

pytestmark = pytest.mark.timeout(90)


def test_a_topic_reaches_members_by_multicast_and_session_and_joiners_by_their_join(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path) as cluster:
        start_daemons(cluster, [1, 2])
        alice = cluster.client("alice")
        bob = cluster.client("bob", args=["--no-multicast"])  # the room over his session
        ready(alice, bob)
        for member in (alice, bob):
            member.send("/join dev")
            member.wait_event("joined", room="dev")
        alice.send("/topic release on Friday ☕")
        for member in (alice, bob):
            got = member.wait_event("topic", room="dev", topic="release on Friday ☕")
            assert got["by"] == "alice"
        alice.wait_event("ok", op="topic", room="dev", topic="release on Friday ☕")
        # Refused with its reason; nobody sees it.
        alice.send("/topic evil\u202etxt")
        alice.wait_event("error", where=lambda e: "bidi" in e["message"])
        carol = cluster.client("carol")
        ready(carol)
        carol.send("/join dev")
        assert carol.wait_event("joined", room="dev")["topic"] == "release on Friday ☕"
        carol.send("/topic")
        carol.wait_event("topic", room="dev", topic="release on Friday ☕")
        bob.send("/topic -clear")
        for member in (alice, bob, carol):
            member.wait_event("topic", room="dev", topic="", where=lambda e: e.get("by") == "bob")
        assert not [e for e in bob.of("topic") if "\u202e" in e["topic"]]
