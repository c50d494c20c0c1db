"""``tchat admin release-name``: only the cluster secret frees a name, and only once (issue 15)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from cluster_harness import REPO, Cluster, Daemon, wait_for

from tchat.crypto.cluster import ClusterSecret


def admin(cluster: Cluster, *args: str, keyed: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "tchat", "admin", *args, *cluster.net_args()]
    env = cluster.status_env(keyed)
    if not keyed:
        env.pop("TCHAT_CLUSTER_KEY", None)
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=30)


class Operator:
    """A hand-driven operator socket: the attacker's view of the admin exchange."""

    def __init__(self, daemon: Daemon) -> None:
        from tchat.crypto import admin as wire

        self.wire = wire
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5.0)
        host, port = daemon.addr.rsplit(":", 1)
        self.dst = (host, int(port))

    def challenge(self, secret: ClusterSecret) -> tuple[bytes, bytes]:
        """(our nonce, the server's challenge): anyone may ask for one."""
        nonce = os.urandom(16)
        self.sock.sendto(self.wire.encode(self.wire.Hello(nonce), None), self.dst)
        data, _ = self.sock.recvfrom(2048)
        message, _ = self.wire.decode(data, (secret,))
        assert isinstance(message, self.wire.Challenge) and message.client_nonce == nonce
        return nonce, message.challenge

    def command(self, nonce: bytes, challenge: bytes, name: str, secret: ClusterSecret) -> bytes:
        return self.wire.encode(self.wire.Command(nonce, challenge, "release-name", name), secret)

    def close(self) -> None:
        self.sock.close()


def test_an_operator_releases_a_name_and_another_key_claims_it(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        cluster.daemon(server_id=1)
        alice = cluster.client("alice")
        alice.wait_event("ready", 15)
        assert admin(cluster, "release-name", "alice", keyed=False).returncode == 2

        done = admin(cluster, "release-name", "alice")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == (
            "tchat admin: released the name alice: its sessions ended; any key may claim it"
        )
        # Her client is told, and does not take the name back with its key.
        notice = alice.wait_event("error", 15, fatal=True)
        assert "released the name alice" in notice["message"]
        newcomer = cluster.client("alice", ["--identity", str(tmp_path / "new-alice.key")])
        newcomer.wait_event("ready", 15)

        again = admin(cluster, "release-name", "nobody")
        assert again.returncode == 1
        assert "no key holds the name nobody" in again.stderr


def test_no_secret_a_wrong_secret_or_a_replay_releases_nothing(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemon = cluster.daemon(server_id=1)
        secret = cluster.secret
        assert secret is not None
        alice = cluster.client("alice")
        alice.wait_event("ready", 15)
        operator = Operator(daemon)
        try:
            # Without the secret: a command with a made-up MAC and challenge.
            forged = bytearray(operator.command(os.urandom(16), os.urandom(16), "alice", secret))
            forged[2:34] = os.urandom(32)
            operator.sock.sendto(bytes(forged), operator.dst)
            # With a wrong secret, over a genuine challenge.
            nonce, challenge = operator.challenge(secret)
            wrong = ClusterSecret.generate()
            operator.sock.sendto(operator.command(nonce, challenge, "alice", wrong), operator.dst)
            wait_for(lambda: daemon.drop_count("admin-bad-mac") >= 2, 10, "two bad MACs counted")

            # A genuine command, captured; it releases alice, the name is claimed again.
            nonce, challenge = operator.challenge(secret)
            captured = operator.command(nonce, challenge, "alice", secret)
            operator.sock.sendto(captured, operator.dst)
            alice.wait_event("error", 15, fatal=True)
            newcomer = cluster.client("alice", ["--identity", str(tmp_path / "new-alice.key")])
            newcomer.wait_event("ready", 15)
            # Replayed: refused and counted, and the newcomer keeps the name.
            operator.sock.sendto(captured, operator.dst)
            wait_for(lambda: daemon.drop_count("admin-replayed") >= 1, 10, "the replay counted")
            released = [line for line in daemon.stderr_lines if "released the name alice" in line]
            assert len(released) == 1, released  # the replay's refusal is logged in its place
            newcomer.send("/msg alice still mine")
            newcomer.wait_event("message", 10, text="still mine")
            assert not newcomer.of("error")
            assert daemon.alive()
        finally:
            operator.close()


def test_a_command_sent_to_a_backup_reaches_the_leader(tmp_path: Path) -> None:
    """``--server`` may name any server: a backup's challenge names the leader, and the
    command goes there (only the leader sequences the release)."""
    with Cluster(tmp_path) as cluster:
        daemons = [cluster.daemon(server_id=i) for i in (1, 2)]
        alice = cluster.client("alice")
        alice.wait_event("ready", 15)
        leader = cluster.leader_of(daemons)
        backup = next(d for d in daemons if d is not leader)
        backup.wait_line(r"\[admitted\]", 15)
        done = admin(cluster, "release-name", "alice", "--server", backup.addr)
        assert done.returncode == 0, done.stderr
        alice.wait_event("error", 15, fatal=True)
        assert any("released the name alice" in line for line in leader.stderr_lines)
