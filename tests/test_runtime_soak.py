"""Soak: three users chat while the leader is killed or stopped again and again.

Skipped unless TCHAT_SOAK=SECONDS is set (e.g. ``TCHAT_SOAK=90 pytest tests/test_runtime_soak.py
-s``): it runs for minutes. Every message typed must reach every room member exactly once, in
each sender's order, across every failover.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
from pathlib import Path

import pytest

from tests.cluster_harness import Client, Cluster, Daemon, wait_for

SECONDS = float(os.environ.get("TCHAT_SOAK", "0") or 0)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SECONDS, reason="set TCHAT_SOAK=SECONDS to run the soak"),
    pytest.mark.timeout(int(SECONDS) + 300),
]
USERS = ("alice", "bob", "carol")
PACE = 0.02  # seconds between one user's lines: ~50 msg/s each


def talk(client: Client, typed: collections.Counter[str], stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        client.send(f"/say soak {client.name}-{i}")
        i += 1
        typed[client.name] = i
        time.sleep(PACE)  # pacing the load, not waiting for a condition


def test_chat_survives_repeated_leader_loss(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("TCHAT_SOAK_SEED", "1"))
    with Cluster(tmp_path) as cluster:
        daemons: dict[int, Daemon] = {i: cluster.daemon(server_id=i, wait=False) for i in (1, 2, 3)}
        for daemon in daemons.values():
            daemon.started()
        clients = {name: cluster.client(name) for name in USERS}
        for client in clients.values():
            client.wait_event("ready", 15)
            client.send("/join soak")
        for client in clients.values():
            client.wait_event("joined", 15)
        typed: collections.Counter[str] = collections.Counter()
        stop = threading.Event()
        talkers = [threading.Thread(target=talk, args=(c, typed, stop)) for c in clients.values()]
        for thread in talkers:
            thread.start()
        started, losses = time.monotonic(), 0
        try:
            while time.monotonic() - started < SECONDS:
                time.sleep(4)  # the current leader serves the load a while (a duration)
                leader = cluster.leader_of(list(daemons.values()), 20)
                if rng.random() < 0.5:
                    leader.kill()
                else:
                    leader.signal(15)
                    leader.wait_exit(10)
                losses += 1
                daemons[leader.server_id] = cluster.daemon(
                    server_id=leader.server_id, data_dir=leader.data_dir
                )
        finally:
            stop.set()
            for thread in talkers:
                thread.join()
        total = sum(typed.values())
        for client in clients.values():
            wait_for(lambda c=client: len(c.of("message")) >= total, 60, f"{client.name}: all")
        for client in clients.values():
            messages = client.of("message")
            ids = [m["id"] for m in messages]
            assert len(ids) == len(set(ids)), f"{client.name} got duplicates"
            by_sender: dict[str, list[int]] = collections.defaultdict(list)
            for m in messages:
                by_sender[m["from"]].append(int(m["text"].rsplit("-", 1)[1]))
            for sender, seq in by_sender.items():
                assert seq == list(range(typed[sender])), f"{client.name} from {sender}"
        print(f"\nsoak: {total} messages, {losses} leader losses, all delivered once, in order")
