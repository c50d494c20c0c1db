"""A replayed lobby beat on real sockets (issue 15): a signed beat captured from the lobby
group on 127.0.0.1, replayed every 30 ms once the leader hangs, does not keep a multicast
client believing the dead leader."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import time
from pathlib import Path

import pytest

from tchat.core.config import ServerConfig, Timing
from tchat.runtime import multicast
from tchat.runtime.options import NetOptions
from tests.cluster_harness import Cluster

KIND_LOBBY = 0xD6  # a signed lobby datagram (room_keys.py)


def lobby_group(port: int) -> tuple[str, int]:
    """The lobby's group: right after the room groups' range (ClusterState.lobby_group)."""
    base = ipaddress.IPv4Address(NetOptions().multicast_base)
    return str(base + ServerConfig(1, "a:1").multicast_count), port


def test_a_replayed_lobby_beat_does_not_hold_off_the_clients_suspicion(tmp_path: Path) -> None:
    """The leader hangs (SIGSTOP: its sockets stay open, so no session end tells the client,
    as when its host loses power). A LAN host replays the leader's last signed beat every
    30 ms: the client still suspects the leader within its usual timeout, where the old
    code took each replay for the leader's next beat and stayed with it for good."""
    if not asyncio.run(multicast.probe("127.0.0.1")):
        pytest.skip("loopback multicast does not work here")
    timeout = Timing().client_leader_timeout
    with Cluster(tmp_path) as cluster:
        daemon = cluster.daemon(server_id=1)
        ip, port = lobby_group(cluster.multicast_port)
        listener = multicast.group_socket(ip, port, "127.0.0.1")
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sender.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1")
            )
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            alice = cluster.client("alice")
            alice.wait_event("ready", 15)
            # Idle now: what the leader multicasts to the lobby is its beats, one per
            # 500 ms. Capture a few and keep the last (bounded: 60 datagrams or 10 s).
            listener.settimeout(1.0)
            beats: list[bytes] = []
            deadline = time.monotonic() + 10
            while len(beats) < 3 and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    data = listener.recv(65536)
                    if data[:1] == bytes((KIND_LOBBY,)):
                        beats.append(data)
            assert len(beats) >= 3, "no signed lobby beats heard"
            captured = beats[-1]
            seen = len(alice.events)
            daemon.signal(signal.SIGSTOP)
            hung_at = time.monotonic()
            suspected: float | None = None
            # Replay every 30 ms for at most three timeouts (the attack's own pace).
            for _ in range(int(3 * timeout / 0.03)):
                sender.sendto(captured, (ip, port))
                if any(
                    e.get("event") == "status" and e.get("state") != "serving"
                    for e in alice.events[seen:]
                ):
                    suspected = time.monotonic() - hung_at
                    break
                time.sleep(0.03)  # the replay's pace, not a wait for a condition
            assert suspected is not None, "the replayed beat kept the hung leader alive"
            # Its timeout counts from the last genuine beat (up to 500 ms before the hang);
            # the rest is slack for a loaded machine.
            print(f"suspected {suspected:.2f} s after the hang, replays every 30 ms")
            assert suspected < timeout + 1.5, suspected
            # The replays are counted where an operator looks: the client's status.
            asked = len(alice.events)
            alice.send("/status")
            status = alice.wait_event("status", 10, start=asked, where=lambda e: "drops" in e)
            assert status["drops"].get("replayed-beat", 0) >= 1, status
        finally:
            daemon.signal(signal.SIGCONT)
            listener.close()
            sender.close()
