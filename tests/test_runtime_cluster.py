"""End-to-end loopback tests: real daemons and headless clients as processes (cluster_harness)."""

from __future__ import annotations

import signal
import socket
import struct
import threading
import time
from pathlib import Path

import msgpack
import pytest

from tchat.core import codec
from tchat.core.messages import MESSAGE_TYPES, NO_EPOCH, PROTOCOL_VERSION, Heartbeat, StatusRequest
from tchat.crypto.cluster import ClusterSecret
from tests.cluster_harness import Client, Cluster, Daemon, wait_for
from tests.wire_attacker import Session

pytestmark = pytest.mark.timeout(90)


def start_daemons(cluster: Cluster, ids: list[int]) -> list[Daemon]:
    daemons = [cluster.daemon(server_id=i, wait=False) for i in ids]
    return [d.started() for d in daemons]


def ready(*clients: Client, timeout: float = 15.0) -> None:
    for client in clients:
        client.wait_event("ready", timeout)


def users_converge(clients: list[Client], names: set[str], timeout: float = 10.0) -> None:
    for client in clients:
        wait_for(lambda c=client: c.user_names() == names, timeout, f"{client.name} sees {names}")


def texts_from(client: Client, sender: str) -> list[str]:
    return [e["text"] for e in client.of("message") if e["from"] == sender]


def test_users_rooms_private_messages_and_logout(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemons = start_daemons(cluster, [1, 2, 3])
        alice, carol = cluster.client("alice"), cluster.client("carol")
        bob = cluster.client("bob", args=["--no-multicast"])  # rooms over his session
        ready(alice, bob, carol)
        assert bob.wait_event("status", state="started")["connection"] == "unicast"
        users_converge([alice, bob, carol], {"alice", "bob", "carol"})

        alice.send("/join lobby")
        bob.send("/join lobby")
        alice.wait_event("joined", room="lobby")
        bob.wait_event("joined", room="lobby")
        alice.send("/say lobby hello room")
        for member in (alice, bob):
            got = member.wait_event("message", text="hello room")
            assert got["room"] == "lobby" and got["from"] == "alice"
            assert got["clock"] and all(k.isdigit() for k in got["clock"])
            alice.wait_event("sent", id=got["id"])
        bob.send("/msg carol psst")
        private = carol.wait_event("message", text="psst")
        assert private["to"] == "carol" and private["from"] == "bob" and private["room"] is None
        bob.send("just typed")  # goes to the last joined room
        alice.wait_event("message", text="just typed", room="lobby")
        bob.send("/bogus")
        bob.wait_event("error", where=lambda e: "bogus" in e["message"])

        status = cluster.status()
        assert status is not None
        assert {s["id"] for s in status["servers"]} == {d.server_id for d in daemons}
        assert status["leader"] in {1, 2, 3}
        assert {u["name"] for u in status["users"]} == {"alice", "bob", "carol"}
        assert "hello room" not in texts_from(carol, "alice"), "carol is not in the room"

        carol.send("/quit")
        assert carol.wait_exit(10) == 0
        users_converge([alice, bob], {"alice", "bob"})
        wait_for(
            lambda: (
                {u["name"] for u in (cluster.status() or {"users": []})["users"]}
                == {"alice", "bob"}
            ),
            10,
            "status without carol",
        )
        bob.kill()  # a crashed client is logged out by the leader's client timeout
        users_converge([alice], {"alice"})


def stream(client: Client, room: str, count: int, interval: float, stop: threading.Event) -> None:
    for i in range(count):
        if stop.is_set():
            return
        client.send(f"/say {room} m{i:03d}")
        time.sleep(interval)  # pacing a steady stream, not waiting for a condition


def test_kill9_leader_failover_delivers_everything_once_and_restart_rejoins(
    tmp_path: Path,
) -> None:
    with Cluster(tmp_path) as cluster:
        daemons = start_daemons(cluster, [1, 2, 3])
        alice, bob = cluster.client("alice"), cluster.client("bob")
        ready(alice, bob)
        for c in (alice, bob):
            c.send("/join lobby")
            c.wait_event("joined", room="lobby")
        leader = cluster.leader_of(daemons)
        old_epoch = alice.of("ready")[-1]["epoch"]
        alice.wait_event("ok", op="join", room="lobby")  # joins are acked with ok, not sent
        base = len(alice.of("sent"))

        count = 80
        stop = threading.Event()
        sender = threading.Thread(target=stream, args=(alice, "lobby", count, 0.01, stop))
        sender.start()
        try:
            alice.wait_event("sent", where=lambda e: len(alice.of("sent")) >= 20)
            killed_at = time.time()
            leader.kill()
            new_leader = bob.wait_event(
                "leader", 15, where=lambda e: e["leader"] != leader.server_id
            )
        finally:
            sender.join(5)
            stop.set()
        failover = new_leader["ts"] - killed_at
        print(
            f"\nkill -9 failover: client learned leader {new_leader['leader']} "
            f"{failover * 1000:.0f} ms after the kill"
        )
        assert new_leader["epoch"] != old_epoch

        wait_for(lambda: len(alice.of("sent")) >= base + count, 20, f"{count} acks")
        acked = [e["id"] for e in alice.of("sent")[base:]]
        assert len(set(acked)) == count
        wait_for(lambda: len(texts_from(bob, "alice")) >= count, 10, "bob gets every message")
        for member in (alice, bob):
            msgs = [e for e in member.of("message") if e["from"] == "alice"]
            ids = [e["id"] for e in msgs]
            assert len(ids) == len(set(ids)), f"{member.name} got a duplicate"
            assert set(acked) <= set(ids), f"{member.name} lost acknowledged messages"
            assert [e["text"] for e in msgs] == [f"m{i:03d}" for i in range(count)]

        restarted = cluster.daemon(server_id=leader.server_id, data_dir=leader.data_dir)
        assert restarted.addr
        wait_for(
            lambda: any(
                s["id"] == leader.server_id and s["role"] == "backup" and s["answered"]
                for s in (cluster.status(0.3) or {"servers": []})["servers"]
            ),
            15,
            "the restarted server rejoins as backup",
        )


def test_sigterm_of_leader_hands_over_quickly(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemons = start_daemons(cluster, [1, 2, 3])
        alice = cluster.client("alice")
        ready(alice)
        leader = cluster.leader_of(daemons)
        stopped_at = time.time()
        leader.signal(signal.SIGTERM)
        learned = alice.wait_event("leader", 10, where=lambda e: e["leader"] != leader.server_id)
        handover = learned["ts"] - stopped_at
        assert leader.wait_exit(5) == 0
        print(
            f"\nSIGTERM handover: client learned leader {learned['leader']} "
            f"{handover * 1000:.0f} ms after the signal"
        )
        # The failure path needs the client to notice silence first (client_leader_timeout).
        assert handover < 1.0, f"handover took {handover:.2f}s"
        alice.send("/join after")
        alice.wait_event("joined", room="after")


def test_full_cluster_restart_keeps_history(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        # No --id: each daemon generates its ID once and keeps it in its data dir.
        daemons = [cluster.daemon(wait=False) for _ in range(2)]
        for d in daemons:
            d.started()
        alice = cluster.client("alice")
        ready(alice)
        alice.send("/join lobby")
        for i in range(3):
            alice.send(f"/say lobby kept {i}")
        wait_for(lambda: len(alice.of("sent")) >= 3, 10, "acks")  # the join's is an ok
        for d in daemons:
            d.kill()
        alice.kill()
        again = [cluster.daemon(data_dir=d.data_dir, wait=False) for d in daemons]
        for d in again:
            d.started()
        assert [d.server_id for d in again] == [d.server_id for d in daemons]
        bob = cluster.client("bob")
        ready(bob)
        bob.send("/join lobby")
        bob.wait_event("joined", room="lobby")
        bob.send("/history lobby 10")
        history = bob.wait_event("history")
        assert [m["text"] for m in history["messages"]] == [f"kept {i}" for i in range(3)]


HEAD = bytes((PROTOCOL_VERSION, 0))  # a frame's header: version, no flags


def skip_challenge(sock: socket.socket) -> None:
    """Read past the Challenge a server sends first on every connection it accepts."""
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        assert chunk, "the daemon hung up before its Challenge"
        head += chunk
    left = struct.unpack(">I", head)[0]
    while left:
        chunk = sock.recv(left)
        assert chunk, "the daemon hung up within its Challenge"
        left -= len(chunk)


def test_bad_input_is_dropped_counted_and_the_node_keeps_serving(tmp_path: Path) -> None:
    with Cluster(tmp_path, key="sekrit") as cluster:
        (daemon,) = start_daemons(cluster, [5])
        host, port = daemon.addr.split(":")
        beat = Heartbeat(src=9, addr="127.0.0.1:1", epoch=NO_EPOCH, seq=0, servers=())
        tcp_cases = [
            codec.frame(HEAD + b"\xc1junk"),  # malformed msgpack
            struct.pack(">I", 50_000_000),  # oversized length prefix
        ]
        for payload in tcp_cases:  # inside an encrypted session, as a client
            with Session(daemon.addr) as session:
                session.write(payload)
                assert session.sock.recv(10) == b"", "the daemon hangs up on a bad stream"
        with Session(daemon.addr) as session:  # a server message from a client: refused
            session.send(beat)
            wait_for(lambda: daemon.drop_count("not-a-server") >= 1, 5, "the client's Heartbeat")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(codec.frame(codec.encode(beat)))  # plaintext: no Noise record
            sock.settimeout(5)
            assert sock.recv(10) == b"", "the daemon hangs up on a plaintext stream"
        forged = codec.encode(beat, b"not the key")
        request = codec.encode(StatusRequest(addr="127.0.0.1:1", nonce=1))
        tag = MESSAGE_TYPES.index(StatusRequest)
        broadcast = ("127.255.255.255", cluster.discovery_port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            udp.sendto(HEAD[:1], (host, int(port)))  # truncated
            udp.sendto(forged, (host, int(port)))
            udp.sendto(HEAD + msgpack.packb([tag, 12, 1]), (host, int(port)))
            udp.sendto(bytes((PROTOCOL_VERSION + 1,)) + request[1:], broadcast)  # unknown version
            udp.sendto(request[:-3], broadcast)  # truncated
            udp.sendto(HEAD + msgpack.packb([9999, 1]), broadcast)
        expected = {
            "malformed": 1,
            "oversized": 1,
            "unsealed": 1,  # a server frame by UDP that is not sealed with the cluster secret
            "handshake-failed": 1,  # the plaintext stream is no Noise message
            "truncated": 2,
            "unknown-version": 1,
            "unknown-message": 1,
            "invalid-field": 1,
        }
        for reason, n in expected.items():
            wait_for(lambda r=reason, n=n: daemon.drop_count(r) >= n, 5, f"{n} x {reason}")

        # A server with another key is kept out: its frames are refused, never merged.
        wrong = tmp_path / "wrong.key"
        wrong.write_text(ClusterSecret.generate().export_line() + "\n")
        wrong.chmod(0o600)
        intruder = cluster.daemon(server_id=7, args=["--cluster-key-file", str(wrong)])
        wait_for(lambda: daemon.drop_count("bad-signature") >= 1, 5, "the intruder's frames")
        # Two clusters answer now: the client takes ours by name (an unpinned one would ask).
        client = cluster.client("alice", args=["--cluster", cluster.fingerprint])
        ready(client)
        status = cluster.status()
        assert status is not None and status["leader"] == 5
        # Its Discover does not open under our secret: never listed as live nor answering.
        assert [(s["id"], s["live"]) for s in status["servers"] if s["answered"]] == [(5, True)]
        assert all(not s["live"] for s in status["servers"] if s["id"] == 7), status
        assert daemon.alive() and intruder.alive()


def test_rate_limit_slows_a_flooding_client_without_losing_anything(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        # One server: the leader is the one with this limit.
        daemon = cluster.daemon(server_id=1, args=["--rate-limit", "200", "--rate-burst", "20"])
        flood = cluster.client("flood")
        ready(flood)
        flood.send("/join lobby")
        flood.wait_event("ok", op="join")
        started = time.monotonic()
        count = 150
        for i in range(count):
            flood.send(f"/say lobby f{i}")
        wait_for(lambda: len(texts_from(flood, "flood")) >= count, 15, "every message")
        elapsed = time.monotonic() - started
        assert texts_from(flood, "flood") == [f"f{i}" for i in range(count)]
        assert elapsed >= (count - 20) / 200 * 0.8, f"{count} messages in {elapsed:.2f}s"
        assert daemon.drop_count("send-buffer-full") == 0
