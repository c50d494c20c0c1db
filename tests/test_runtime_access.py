"""Private rooms and scrollback through real daemons and headless clients (127.0.0.1 only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster_harness import Cluster, wait_for
from tests.test_runtime_cluster import ready, start_daemons, users_converge

pytestmark = pytest.mark.timeout(90)


def test_private_room_invite_kick_and_scrollback_by_membership(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        start_daemons(cluster, [1])
        alice, bob, mallory = (cluster.client(n) for n in ("alice", "bob", "mallory"))
        ready(alice, bob, mallory)
        users_converge([alice, bob, mallory], {"alice", "bob", "mallory"})

        alice.send("/create den --private")
        alice.wait_event("ok", op="create", room="den", private=True)
        alice.wait_event("joined", room="den")
        mallory.send("/join den")
        mallory.wait_event("error", where=lambda e: "private" in e["message"])
        mallory.send("/invite den mallory")
        mallory.wait_event("error", where=lambda e: "owner" in e["message"])
        alice.send("/invite den bob")
        alice.wait_event("ok", op="invite", room="den", user="bob")
        bob.send("/join den")
        bob.wait_event("joined", room="den")
        alice.send("/say den for members only")
        bob.wait_event("message", text="for members only")

        mallory.send("/history den")
        history = mallory.wait_event("history")
        assert history["messages"] == []
        bob.send("/history den")
        history = bob.wait_event("history")
        assert [m["text"] for m in history["messages"]] == ["for members only"]

        alice.send("/kick den bob")
        alice.wait_event("ok", op="kick", room="den", user="bob")
        bob.wait_event("left", room="den", kicked_by="alice")
        alice.send("/say den after bob")
        alice.wait_event("message", text="after bob")
        bob.send("/join den")
        bob.wait_event("error", where=lambda e: "private" in e["message"])
        bob.send("/history den")
        wait_for(lambda: len(bob.of("history")) == 2, 10, "bob's second history answer")
        assert bob.of("history")[1]["messages"] == []
        assert all(m["text"] != "after bob" for m in bob.of("message"))
        assert mallory.of("message") == []

        alice.send("/mode den public")
        alice.wait_event("ok", op="mode", room="den", mode="public")
        mallory.send("/join den")
        mallory.wait_event("joined", room="den")
        mallory.send("/history den")
        wait_for(lambda: len(mallory.of("history")) == 2, 10, "mallory's second answer")
        # public now, yet what was said while the room was private stays with who was there
        assert mallory.of("history")[1]["messages"] == []
