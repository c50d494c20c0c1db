"""A real daemon keeps its files private, makes its own key, tells strangers nothing in
``tchat status`` and logs no message text at any level."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tchat.crypto.cluster import ClusterSecret
from tests.cluster_harness import REPO, Cluster, Daemon


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def status(cluster: Cluster, env: dict[str, str], *extra: str) -> dict[str, Any] | None:
    argv = [sys.executable, "-m", "tchat", "status", "--json", "--wait", "0.6"]
    argv += ["--host", "127.0.0.1", "--discovery-port", str(cluster.discovery_port), *extra]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=20)
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_a_daemon_without_a_key_makes_one_and_keeps_its_files_private(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:  # its own daemon: the harness would give it a key
        env = cluster.env
        data = tmp_path / "server"
        # As an earlier version left it: a data dir and a database any local user reads.
        data.mkdir(mode=0o755)
        data.chmod(0o755)
        sqlite3.connect(data / "tchat.db").close()
        (data / "tchat.db").chmod(0o644)
        argv = [sys.executable, "-m", "tchat", "--daemon", "--host", "127.0.0.1"]
        argv += ["--discovery-port", str(cluster.discovery_port)]
        argv += ["--multicast-port", str(cluster.multicast_port), "--data-dir", str(data)]
        daemon = Daemon("daemon-keyless", argv, env)
        cluster.procs.append(daemon)
        daemon.started()
        assert mode(data) == 0o700
        for name in ("tchat.db", "tchat.db-wal", "tchat.db-shm", "cluster.key"):
            assert mode(data / name) == 0o600, name
        log = "\n".join(daemon.stderr_lines)
        assert "created a cluster key" in log and "tchat key show --data-dir" in log
        assert "was mode 0755" in log and "was mode 0644" in log  # said once, then fixed

        shown = subprocess.run(
            [sys.executable, "-m", "tchat", "key", "show", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=20,
        )
        key = (data / "cluster.key").read_text().strip()
        assert shown.returncode == 0 and shown.stdout.strip() == key
        exported = subprocess.run(
            [sys.executable, "-m", "tchat", "key", "show", "--data-dir", str(data), "--export"],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=20,
        )
        assert exported.stdout.strip() == f"TCHAT_CLUSTER_KEY={key}"
        assert key not in " ".join(daemon.argv)  # nothing secret in what ps shows

        # A client needs no key; the anonymous status tells it the servers and no more.
        cluster.client("alice").wait_event("ready")
        anonymous = status(cluster, env)
        assert anonymous is not None
        assert anonymous["leader"] == daemon.server_id
        assert anonymous["servers"] and anonymous["users"] is None and anonymous["rooms"] is None
        assert anonymous["full"] is False and anonymous["log_size"] is None
        keyed = status(cluster, {**env, "TCHAT_CLUSTER_KEY": key})
        assert keyed is not None and keyed["full"] is True
        assert [u["name"] for u in keyed["users"]] == ["alice"]


def test_no_log_level_prints_message_text(tmp_path: Path) -> None:
    marker = "zq-unique-marker-7fd1"
    with Cluster(tmp_path, key="the debug test key") as cluster:
        daemon = cluster.daemon(server_id=1, log_level="DEBUG")
        alice = cluster.client("alice", args=["--log-level", "DEBUG"])
        bob = cluster.client("bob", args=["--log-level", "DEBUG"])
        alice.wait_event("ready")
        bob.wait_event("ready")
        alice.send("/join lobby")
        bob.send("/join lobby")
        alice.wait_event("joined", room="lobby")
        bob.wait_event("joined", room="lobby")
        alice.send(f"/say lobby {marker} in the room")
        alice.send(f"/msg bob {marker} in private")
        bob.wait_event("message", where=lambda e: "in the room" in e["text"])
        bob.wait_event("message", where=lambda e: "in private" in e["text"])
        alice.wait_event("sent")
        for proc in (daemon, alice, bob):
            log = "\n".join(proc.stderr_lines)
            assert marker not in log, proc.name
            assert "tchat.frames" in log, proc.name  # the frames are still logged...
        server_log = "\n".join(daemon.stderr_lines)
        assert "Submit(" in server_log and "text=<" in server_log  # ...as type and size
        assert "client_id=<" in server_log  # a client ID works as a credential today


def test_redacted_shows_shape_never_text() -> None:
    from tchat.core.messages import SendChat, Submit
    from tchat.core.redact import redacted
    from tchat.core.vclock import VectorClock

    message = Submit(
        "secret-client-id", 3, SendChat("lobby", None, "hello there", False), VectorClock(), 1.5
    )
    text = redacted(message)
    assert "hello there" not in text and "secret-client-id" not in text
    assert text.startswith("Submit(") and "SendChat(" in text and "'lobby'" in text
    assert "text=<11 chars>" in text and "client_id=<16 chars>" in text


def test_status_without_the_key_shows_no_users_rooms_or_counts(tmp_path: Path) -> None:
    with Cluster(tmp_path, key="the status test key") as cluster:
        daemon = cluster.daemon(server_id=1)
        alice = cluster.client("alice")
        alice.wait_event("ready")
        alice.send("/join lobby")
        alice.wait_event("joined", room="lobby")
        stranger = {k: v for k, v in cluster.env.items() if k != "TCHAT_CLUSTER_KEY"}
        anonymous = status(cluster, stranger)
        assert anonymous is not None and anonymous["leader"] == 1
        assert [s["addr"] for s in anonymous["servers"]] == [daemon.addr]
        assert anonymous["users"] is None and anonymous["rooms"] is None
        assert anonymous.get("user_count") is None and anonymous.get("room_count") is None
        assert "alice" not in json.dumps(anonymous) and "lobby" not in json.dumps(anonymous)
        keyed = status(cluster, cluster.env)  # TCHAT_CLUSTER_KEY: a signed request
        assert keyed is not None and keyed["user_count"] == 1 and keyed["room_count"] == 1
        assert [u["name"] for u in keyed["users"]] == ["alice"]
        # A request that claims the full view without the key's signature gets nothing.
        # (an --insecure status takes no signed reply either: it hears nothing it trusts)
        forger = status(cluster, stranger, "--insecure")
        assert forger is None or forger["users"] is None
        wrong = subprocess.run(
            [sys.executable, "-m", "tchat", "status", "--wait", "0.4", "--host", "127.0.0.1"]
            + ["--discovery-port", str(cluster.discovery_port)],
            capture_output=True,
            text=True,
            # A well-formed secret of another cluster (a phrase is refused as a usage error).
            env={**stranger, "TCHAT_CLUSTER_KEY": ClusterSecret.generate().export_line()},
            cwd=REPO,
            timeout=20,
        )
        assert wrong.returncode == 1 and "is it the cluster's?" in wrong.stderr


def test_a_clients_xdg_dirs_are_made_private(tmp_path: Path) -> None:
    data, config = tmp_path / "data" / "tchat", tmp_path / "config" / "tchat"
    for path in (data, config):  # as an earlier version (or a umask of 022) left them
        path.mkdir(parents=True)
        path.chmod(0o755)
    with Cluster(tmp_path, key="the xdg test key") as cluster:
        cluster.daemon(server_id=1, data_dir=tmp_path / "server")
        alice = cluster.client("alice")
        alice.wait_event("ready")
        assert mode(data) == 0o700 and mode(config) == 0o700
        assert "was mode 0755" in "\n".join(alice.stderr_lines)


def test_status_text_says_what_is_withheld_and_which_servers_run_insecure() -> None:
    from tchat.core.messages import Epoch, ServerInfo, StatusReply, UserInfo
    from tchat.runtime.status import render, summarize

    servers = (ServerInfo(1, "127.0.0.1:5001"), ServerInfo(2, "127.0.0.1:5002"))
    epoch = Epoch(3, 2)

    def reply(sid: int, full: bool) -> StatusReply:
        users = (UserInfo("alice", "127.0.0.1:6000", "online", 1.0),) if full else ()
        return StatusReply(
            sid, f"127.0.0.1:500{sid}", "leader" if sid == 2 else "backup", epoch, 2,
            "127.0.0.1:5002", servers, (1, 2), users, (), 9 if full else 0, 7,
            len(users), 0, full=full,
        )  # fmt: skip

    summary = summarize([reply(1, False), reply(2, False)], insecure=[1])
    summary["cluster"] = {"fingerprint": "SHA256:abc", "pinned": None}  # as main() adds it
    anonymous = render(summary)
    assert "users, rooms: (ask with the cluster key" in anonymous and "alice" not in anonymous
    assert "WARNING: server(s) 1 run without a cluster key" in anonymous
    assert "127.0.0.1:5002" in anonymous
    assert "cluster key SHA256:abc  (not pinned here yet)" in anonymous
    # A full reply from any server is the view shown, even if the best-epoch one is not.
    mixed = summarize([reply(1, True), reply(2, False)])
    assert mixed["full"] and [u["name"] for u in mixed["users"]] == ["alice"]
    assert "alice" in render(mixed) and "WARNING" not in render(mixed)
