"""Option merging of the node modes: defaults < TOML config < environment < command line."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tchat.core.messages import JoinRoom, SendChat
from tchat.runtime.headless import parse
from tchat.runtime.modes import build_parser
from tchat.runtime.options import broadcast_for, options_from_args


def parse_options(argv: list[str], mode: str = "daemon"):  # type: ignore[no-untyped-def]
    return options_from_args(build_parser().parse_args(argv), mode)


def test_command_line_beats_config_file_and_env_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tchat.toml"
    config.write_text(
        'host = "127.0.0.2"\nport = 4000\nrate_limit = 7\n'
        'cluster_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="\n'
        "[timing]\nheartbeat_interval = 0.02\n"
    )
    config.chmod(0o600)  # it holds the cluster key
    monkeypatch.setenv("TCHAT_CLUSTER_KEY", "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=")
    opts = parse_options(["--config", str(config), "--port", "5000"])
    assert (opts.host, opts.port, opts.rate_limit) == ("127.0.0.2", 5000, 7)
    assert opts.cluster_key == b"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
    assert opts.timing.heartbeat_interval == 0.02
    assert opts.broadcast == "127.255.255.255"
    key_file = tmp_path / "cluster.key"
    key_file.write_text("AgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICE=\n")
    key_file.chmod(0o600)
    argv = ["--config", str(config), "--cluster-key-file", str(key_file), "--host", "127.0.0.1"]
    opts = parse_options(argv)
    assert (opts.cluster_key, opts.host) == (
        b"AgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICE=",
        "127.0.0.1",
    )
    monkeypatch.delenv("TCHAT_CLUSTER_KEY")
    assert (
        parse_options(["--config", str(config)]).cluster_key
        == b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    )


def test_xdg_config_is_read_and_bad_timing_keys_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("TCHAT_CLUSTER_KEY", raising=False)
    (tmp_path / "tchat").mkdir()
    (tmp_path / "tchat" / "config.toml").write_text('host = "127.0.0.1"\ndiscovery_port = 1234\n')
    opts = parse_options([])
    assert opts.discovery_port == 1234 and opts.cluster_key is None
    (tmp_path / "tchat" / "config.toml").write_text("[timing]\nbogus = 1\n")
    with pytest.raises(SystemExit):
        parse_options(["--host", "127.0.0.1"])


def test_broadcast_address_for_loopback_and_unknown_interfaces() -> None:
    assert broadcast_for("127.0.0.1") == "127.255.255.255"
    assert broadcast_for("198.19.7.5") == "198.19.7.255"  # no such interface: assume a /24


def test_headless_command_parsing() -> None:
    assert parse("/join lobby\n", None).op == JoinRoom("lobby")
    assert parse("/say lobby hi there", None).op == SendChat("lobby", None, "hi there", False)
    assert parse("/msg bob yo", None).op == SendChat(None, "bob", "yo", False)
    assert parse("plain text", "lobby").op == SendChat("lobby", None, "plain text", False)
    assert parse("plain text", None).error
    assert parse("/say lobby", None).error
    assert parse("/nope", None).error
    assert parse("/quit", None).action == "quit"


def test_status_exits_1_when_no_server_answers(tmp_path: Path) -> None:
    port = random.randrange(20000, 32000)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tchat",
            "status",
            "--host",
            "127.0.0.1",
            "--wait",
            "0.2",
            "--discovery-port",
            str(port),
        ],
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "no server answered" in done.stderr
