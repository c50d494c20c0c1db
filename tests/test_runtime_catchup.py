"""Real daemons: a backup frozen (SIGSTOP) under a steady stream of messages is dropped
from the leader's view, caught up and back in it soon after it thaws; nothing
acknowledged is lost."""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.cluster_harness import Client, Cluster, Daemon, wait_for

pytestmark = pytest.mark.timeout(90)

FROZEN = 0.6  # seconds: over two backup timeouts (0.25 s)


def stream(client: Client, count: int, interval: float, stop: threading.Event) -> None:
    for i in range(count):
        if stop.is_set():
            return
        client.send(f"/say lobby m{i:03d}")
        time.sleep(interval)  # pacing a steady stream, not waiting for a condition


def line_after(daemon: Daemon, pattern: str, start: int, timeout: float) -> int:
    """Index of the first stderr line from ``start`` on that matches ``pattern``."""
    regex = re.compile(pattern)
    daemon.wait_line(pattern, timeout, start=start)
    return next(
        i for i in range(start, len(daemon.stderr_lines)) if regex.search(daemon.stderr_lines[i])
    )


def test_a_frozen_backup_is_back_in_the_view_under_a_steady_stream(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemons = [
            d.started() for d in [cluster.daemon(server_id=i, wait=False) for i in (1, 2, 3)]
        ]
        alice, bob = cluster.client("alice"), cluster.client("bob")
        for c in (alice, bob):
            c.wait_event("ready", 15)
            c.send("/join lobby")
            c.wait_event("joined", room="lobby")
        leader = cluster.leader_of(daemons)
        backup = next(d for d in daemons if d is not leader)
        alice.wait_event("ok", op="join", room="lobby")
        base = len(alice.of("sent"))
        count = 250
        stop = threading.Event()
        sender = threading.Thread(target=stream, args=(alice, count, 0.01, stop))
        sender.start()
        try:
            alice.wait_event("sent", where=lambda e: len(alice.of("sent")) >= base + 30)
            mark = len(leader.stderr_lines)
            backup.signal(signal.SIGSTOP)
            try:
                time.sleep(FROZEN)  # the length of the freeze, not a wait for a condition
            finally:
                backup.signal(signal.SIGCONT)
            thawed = time.monotonic()
            sid = backup.server_id
            dropped = line_after(leader, rf"\[server-dropped\] server {sid} dropped", mark, 5)
            line_after(leader, rf"\[caught-up\] server {sid} ", dropped, 5)
            back = time.monotonic() - thawed
        finally:
            sender.join(10)
            stop.set()
        print(f"\nbackup {sid} back in the view {back * 1000:.0f} ms after it thawed")
        wait_for(lambda: len(alice.of("sent")) >= base + count, 15, f"{count} acks")
        acked = {e["id"] for e in alice.of("sent")[base:]}
        wait_for(
            lambda: acked <= {e["id"] for e in bob.of("message")}, 10, "bob gets every message"
        )
        # The freeze cost no election: the same leader throughout.
        status = cluster.status()
        assert status is not None and status["leader"] == leader.server_id
