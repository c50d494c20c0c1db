"""Finding the cluster where broadcast does not pass: --server fallback, the no-answer hint,
and where a server without --data-dir keeps its data (real processes, 127.0.0.1 only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster_harness import Daemon, cluster, free_udp_port, wait_for


def unheard_port(taken: int) -> int:
    """A discovery port nobody listens on (not the cluster's)."""
    port = free_udp_port()
    return port + 1 if port == taken else port


def test_server_fallback_finds_the_cluster_when_broadcast_reaches_nobody(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        server = c.daemon(server_id=1)
        # The client's broadcast goes to a port no server listens on: only the unicast
        # Discover to --server can reach the cluster.
        lost = unheard_port(c.discovery_port)
        alice = c.client("alice", ["--discovery-port", str(lost), "--server", server.addr])
        ready = alice.wait_event("ready", timeout=20)
        assert ready["leader"] == 1
        alice.send("/join lobby")
        alice.wait_event("ok", op="join", room="lobby")
        alice.send("/quit")
        assert alice.wait_exit(10) == 0
        # And without --server, the same client finds nothing and says so.
        bob = c.client("bob", ["--discovery-port", str(lost), "--discovery-hint", "0.5"])
        bob.wait_event("status", state="no-answer", timeout=15)
        assert not bob.of("ready")


def test_no_answer_hint_says_what_was_tried(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        port = c.discovery_port  # no server at all
        alice = c.client("alice", ["--discovery-hint", "0.5", "--server", "127.0.0.1:9"])
        hint = alice.wait_event("status", state="no-answer", timeout=15)
        assert hint["broadcast"] == f"127.255.255.255:{port}"
        assert hint["tried"] == [f"127.255.255.255:{port}", "127.0.0.1:9"]
        assert hint["addr"].startswith("127.0.0.1:")
        for words in (f"127.255.255.255:{port}", "--server", "--host", "firewall", "subnet"):
            assert words in hint["detail"], hint["detail"]
        assert hint["waited"] >= 0.5
        assert not alice.of("ready")


def test_server_option_parses_mode_and_fallbacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tchat.runtime.modes import build_parser
    from tchat.runtime.options import options_from_args, wants_dashboard

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    parser = build_parser()
    bare = parser.parse_args(["--server", "--host", "127.0.0.1"])
    assert wants_dashboard(bare)
    assert options_from_args(bare, "server").servers == ()
    both = parser.parse_args(
        [
            "--server",
            "127.0.0.1:5001",
            "--server",
            "--server",
            "127.0.0.2:5002",
            "--host",
            "127.0.0.1",
        ]
    )
    assert wants_dashboard(both)
    assert options_from_args(both, "server").servers == ("127.0.0.1:5001", "127.0.0.2:5002")
    client = parser.parse_args(["--user", "a", "--server", "127.0.0.1:5001", "--host", "127.0.0.1"])
    assert not wants_dashboard(client)
    config = tmp_path / "c.toml"
    config.write_text('servers = ["127.0.0.3:7000", "127.0.0.1:5001"]\n')
    merged = parser.parse_args(
        ["--config", str(config), "--server", "127.0.0.1:5001", "--host", "127.0.0.1"]
    )
    assert options_from_args(merged, "client").servers == ("127.0.0.3:7000", "127.0.0.1:5001")
    for bad in ("127.0.0.1", "host:1", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x"):
        with pytest.raises(SystemExit):
            options_from_args(parser.parse_args(["--server", bad, "--host", "127.0.0.1"]), "client")
    many = [a for i in range(17) for a in ("--server", f"127.0.0.1:{5000 + i}")]
    with pytest.raises(SystemExit):
        options_from_args(parser.parse_args([*many, "--host", "127.0.0.1"]), "client")


def test_server_without_data_dir_keeps_its_data_under_its_id(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        argv = [sys.executable, "-m", "tchat", "--daemon", *c.net_args(), "--log-level", "INFO"]
        first = Daemon("daemon-a", argv, c.env)
        c.procs.append(first)
        first.started()
        data_home = tmp_path / "data" / "tchat"
        assert Path(first.data_dir) == data_home / str(first.server_id)
        first.signal(15)
        assert first.wait_exit(15) == 0
        again = Daemon("daemon-b", argv, c.env)  # another start, another port: same server
        c.procs.append(again)
        again.started()
        assert again.server_id == first.server_id
        assert again.data_dir == first.data_dir


def test_servers_find_each_other_and_status_finds_them_by_server_address(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        first = c.daemon(server_id=1)
        c.leader_of([first], timeout=20)
        # The second server's broadcasts reach nobody: it joins through --server alone.
        lost = unheard_port(c.discovery_port)
        second = c.daemon(server_id=2, args=["--discovery-port", str(lost), "--server", first.addr])

        def both_live() -> bool:
            status = c.status(0.4)
            if status is None:
                return False
            return {s["id"] for s in status["servers"] if s["live"]} == {1, 2}

        wait_for(both_live, 30, "server 2 in the cluster of server 1")
        # tchat status on the unheard port finds the cluster through --server too.
        argv = c.status_argv(0.5)
        argv += ["--discovery-port", str(lost), "--server", second.addr]
        done = subprocess.run(argv, capture_output=True, text=True, env=c.env, timeout=20)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["leader"] == 1
