"""Issue 15's attacks on the datagram path, by a LAN host with a plain UDP socket: each one
worked on the tree before (30fb81c); now server datagrams are signed (for clients) or sealed
(between servers), replies must answer a fresh nonce, and an unpinned client never picks a
cluster silently."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tchat.core import codec
from tchat.core.messages import Discover, DiscoverReply, Epoch, NewLeader, ServerInfo
from tests.cluster_harness import Client, Cluster, Daemon, Proc, wait_for

pytestmark = pytest.mark.timeout(120)

HUGE = Epoch(2**40, 666)
MAX_DATAGRAMS = 200  # every loop of the attacker is bounded in count and time


def drops(proc: Proc, reason: str) -> int:
    """Datagrams ``proc`` dropped for ``reason``, as its log says (a client's too)."""
    found = 0
    for line in list(proc.stderr_lines):
        match = re.search(rf"dropped frame from \S+: {re.escape(reason)} .*\[(\d+) so far\]", line)
        if match:
            found = max(found, int(match[1]))
    return found


def attacker(timeout: float = 0.3) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(timeout)
    return sock


def udp_addr(addr: str) -> tuple[str, int]:
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def client_addr(client: Client) -> tuple[str, int]:
    started = client.wait_event("status", state="started")
    return udp_addr(started["addr"])


def ask_discovery(cluster: Cluster, seconds: float = 3.0) -> list[bytes]:
    """What the cluster's servers answer a client's Discover, raw (signed, if they sign)."""
    with attacker() as sock:
        me = "{}:{}".format(*sock.getsockname())
        probe = codec.encode(Discover(me, "client", 424242, 0))
        heard: list[bytes] = []
        deadline = time.monotonic() + seconds
        while not heard and time.monotonic() < deadline:
            sock.sendto(probe, ("127.255.255.255", cluster.discovery_port))
            for _ in range(10):
                try:
                    heard.append(sock.recv(65535))
                except TimeoutError:
                    break
        assert heard, "no server answered our Discover"
        return heard


def three(cluster: Cluster) -> tuple[list[Daemon], Daemon]:
    daemons = [cluster.daemon(server_id=i, wait=False) for i in (1, 2, 3)]
    daemons = [d.started() for d in daemons]
    leader = cluster.leader_of(daemons)
    wait_for(lambda: len((cluster.status() or {}).get("servers", [])) == 3, 15, "3 servers")
    return daemons, leader


def epoch_of(status: dict[str, Any] | None) -> str:
    assert status is not None, "nobody answered tchat status"
    return str(status["epoch"])


def test_a_forged_new_leader_is_followed_by_nobody(tmp_path: Path) -> None:
    """A forged DiscoverReply (making the attacker a known server) then a NewLeader with a
    huge epoch, from a plain socket, to a serving client and to every server."""
    with Cluster(tmp_path) as cluster:
        daemons, leader = three(cluster)
        before = epoch_of(cluster.status())
        alice = cluster.client("alice")
        ready = alice.wait_event("ready", timeout=15)
        target = client_addr(alice)
        with attacker() as sock:
            me = "{}:{}".format(*sock.getsockname())
            servers = (ServerInfo(666, me),)
            lure = codec.encode(DiscoverReply(666, me, 666, me, HUGE, servers, 0))
            forged = codec.encode(NewLeader(666, me, HUGE, servers))
            victims = [target] + [udp_addr(d.addr) for d in daemons]
            victims.append(("127.255.255.255", cluster.discovery_port))
            for _ in range(5):
                for victim in victims:
                    sock.sendto(lure, victim)
                    sock.sendto(forged, victim)
                time.sleep(0.05)  # the attacker's pace, not a wait for a condition

            def refused() -> bool:
                return drops(alice, "unsigned") >= 10 and all(
                    drops(d, "unsealed") + drops(d, "udp-refused") >= 1 for d in daemons
                )

            wait_for(refused, 15, "the forged datagrams refused")
        assert not [e for e in alice.of("leader") if e.get("leader") == 666]
        assert alice.alive()
        assert epoch_of(cluster.status()) == before
        assert cluster.leader_of(daemons) is leader
        alice.send("/join lobby2")
        alice.wait_event("ok", op="join", room="lobby2", timeout=15)
        assert ready["leader"] == leader.server_id


def test_a_replayed_signed_reply_is_ignored(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemons, leader = three(cluster)
        captured = ask_discovery(cluster)  # genuine replies to a nonce that is not the client's
        alice = cluster.client("alice")
        alice.wait_event("ready", timeout=15)
        target = client_addr(alice)
        with attacker() as sock:
            for _ in range(10):
                for reply in captured:
                    sock.sendto(reply, target)
        wait_for(lambda: drops(alice, "stale-reply") >= 10, 15, "the replays refused")
        assert alice.alive()
        assert not [e for e in alice.events if e.get("event") == "error"]


def test_flipped_bytes_in_server_datagrams_are_counted_and_dropped(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        # Hear the servers' own broadcasts (a second listener on the discovery port).
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.255.255.255", cluster.discovery_port))
        listener.settimeout(0.5)
        with listener:
            first = cluster.daemon(server_id=1)
            second = cluster.daemon(server_id=2)
            cluster.leader_of([first, second])
            server_datagrams: list[bytes] = []
            deadline = time.monotonic() + 10
            while not server_datagrams and time.monotonic() < deadline:
                try:
                    server_datagrams.append(listener.recv(65535))
                except TimeoutError:
                    continue
        assert server_datagrams, "no server broadcast heard"
        client_datagrams = ask_discovery(cluster)
        alice = cluster.client("alice")
        alice.wait_event("ready", timeout=15)
        target = client_addr(alice)
        with attacker() as sock:
            for i in range(20):
                for data in client_datagrams:
                    flipped = bytearray(data)
                    flipped[-1 - (i % 32)] ^= 0x40  # inside the signature
                    sock.sendto(bytes(flipped), target)
                for data in server_datagrams:
                    flipped = bytearray(data)
                    flipped[-1 - (i % 16)] ^= 0x01  # inside the AEAD tag
                    sock.sendto(bytes(flipped), udp_addr(first.addr))
        wait_for(lambda: drops(alice, "bad-signature") >= 20, 15, "the client's drops")
        wait_for(lambda: drops(first, "bad-signature") >= 20, 15, "the server's drops")
        assert first.alive() and second.alive() and alice.alive()
        alice.send("/join after")
        alice.wait_event("ok", op="join", room="after", timeout=15)


def leading(daemon: Daemon) -> Daemon:
    """``daemon`` once it serves as leader (``tchat status`` would ask which cluster)."""
    daemon.wait_line(r"\[serving\] leader", 15)
    return daemon


def rogue_beside(real: Cluster, tmp: Path) -> Cluster:
    """Another cluster (its own secret) answering on the same discovery port."""
    rogue = Cluster(tmp)
    rogue.discovery_port = real.discovery_port
    return rogue


def test_a_rogue_cluster_does_not_capture_an_unpinned_client(tmp_path: Path) -> None:
    with Cluster(tmp_path / "real") as real, rogue_beside(real, tmp_path / "rogue") as rogue:
        leading(rogue.daemon(server_id=9))  # started first: it answers first
        real_daemon = leading(real.daemon(server_id=1))
        victim = real.client("victim")
        error = victim.wait_event("error", timeout=20, fatal=True)
        assert victim.wait_exit(10) != 0
        assert not victim.of("ready"), "an unpinned client followed a cluster silently"
        fingerprints = {c["fingerprint"] for c in error["clusters"]}
        assert fingerprints == {real.fingerprint, rogue.fingerprint}
        assert real.fingerprint in error["message"] and rogue.fingerprint in error["message"]
        # Named on the command line, the real one is pinned and followed.
        chosen = real.client("victim", args=["--cluster", real.fingerprint])
        ready = chosen.wait_event("ready", timeout=20)
        assert ready["leader"] == real_daemon.server_id
        status = real.status(keyed=False)  # as anyone: both clusters answer
        assert status is not None
        assert status["cluster"] == {"fingerprint": real.fingerprint, "pinned": real.fingerprint}
        assert status["other_clusters"] == [rogue.fingerprint]


def test_a_pinned_client_ignores_another_cluster(tmp_path: Path) -> None:
    with Cluster(tmp_path / "real") as real, rogue_beside(real, tmp_path / "rogue") as rogue:
        real_daemon = leading(real.daemon(server_id=1))
        first = real.client("alice")  # alone: pinned on first use
        first.wait_event("ready", timeout=20)
        first.send("/quit")
        assert first.wait_exit(15) == 0
        shown = first.wait_event("status", state="pinned", fingerprint=real.fingerprint)
        assert shown["detail"] == f"pinned cluster {real.fingerprint} (first use)"
        leading(rogue.daemon(server_id=9))
        again = real.client("alice")
        ready = again.wait_event("ready", timeout=20)
        assert ready["leader"] == real_daemon.server_id
        wait_for(lambda: drops(again, "unknown-cluster") >= 1, 15, "the rogue's replies refused")
