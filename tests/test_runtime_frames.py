"""Real daemons on 127.0.0.1: a burst of max-size messages commits and is delivered (every
frame is cut by its encoded bytes, so none goes over the transport's cap)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster_harness import Cluster, Daemon, wait_for

pytestmark = pytest.mark.timeout(120)


def _line(i: int) -> str:
    """3,990 characters, multi-byte ones among them (~9 KB of UTF-8)."""
    head = f"{i:03d} "
    return head + ("é🙂ab" * 1000)[: 3990 - len(head)]


def test_twenty_max_size_lines_at_once_are_all_delivered(tmp_path: Path) -> None:
    """Found on 127.0.0.1: the leader batched the 20 lines into one 81 KB Append, the
    transport refused it (too-big-to-send) on every retry: 0 of 20 delivered, and nothing
    committed again for anyone."""
    with Cluster(tmp_path) as cluster:
        daemons: list[Daemon] = [cluster.daemon(server_id=i, wait=False) for i in (1, 2, 3)]
        for daemon in daemons:
            daemon.started()
        alice, bob = cluster.client("alice"), cluster.client("bob")
        for client in (alice, bob):
            client.wait_event("ready", 20)
        wait_for(lambda: bob.user_names() == {"alice", "bob"}, 15, "bob sees alice")
        for client in (alice, bob):
            client.send("/join r")
            client.wait_event("joined", 15, room="r")
        wait_for(
            lambda: any(len(e.get("members", ())) == 2 for e in alice.of("members")),
            15,
            "alice sees bob in r",
        )
        lines = [_line(i) for i in range(20)]
        for text in lines:
            alice.send(f"/say r {text}")

        def received() -> list[str]:
            return [e["text"] for e in bob.of("message") if e["from"] == "alice"]

        wait_for(lambda: len(received()) >= 20, 30, "bob gets the 20 lines")
        assert received() == lines
        alice.send("/say r and after them")
        bob.wait_event("message", 15, text="and after them")
        for daemon in daemons:
            assert not any("too-big" in line for line in daemon.stderr_lines), daemon.tail()
