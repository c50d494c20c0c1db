"""Real daemons on 127.0.0.1: away reasons replicate; a server that left is gone (issue 16)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tchat.runtime.modes import build_parser
from tchat.runtime.options import options_from_args
from tests.cluster_harness import Cluster, Daemon, wait_for

pytestmark = pytest.mark.timeout(90)


def listed(cluster: Cluster) -> set[int] | None:
    status = cluster.status(0.3)
    return None if status is None else {s["id"] for s in status["servers"]}


def reason_of(users: list[dict[str, Any]], name: str) -> str | None:
    return next((u.get("reason") for u in users if u["name"] == name), None)


def test_a_server_that_stops_gracefully_is_gone_from_status(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        daemons = [cluster.daemon(server_id=i, wait=False) for i in (1, 2, 3)]
        daemons = [d.started() for d in daemons]
        wait_for(lambda: listed(cluster) == {1, 2, 3}, 20, "three servers in status")
        leader: Daemon = cluster.leader_of(daemons)
        backup = next(d for d in daemons if d is not leader)
        backup.signal(signal.SIGTERM)
        assert backup.wait_exit() == 0
        rest = {d.server_id for d in daemons if d is not backup}
        wait_for(lambda: listed(cluster) == rest, 10, f"status lists only {rest}")

        leader.signal(signal.SIGTERM)  # the leader hands over, and leaves too
        assert leader.wait_exit() == 0
        last = {d.server_id for d in daemons if d not in (backup, leader)}
        wait_for(lambda: listed(cluster) == last, 15, f"status lists only {last}")


def test_an_away_reason_reaches_the_other_users(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        cluster.daemon(server_id=1)
        alice, bob = cluster.client("alice"), cluster.client("bob")
        for client in (alice, bob):
            client.wait_event("ready", 15)
        alice.send("/away at the dentist")
        assert alice.wait_event("ok", op="away")["reason"] == "at the dentist"
        wait_for(
            lambda: any(
                reason_of(e["users"], "alice") == "at the dentist" for e in bob.of("users")
            ),
            10,
            "bob sees alice's reason",
        )
        alice.send("/back")
        alice.wait_event("ok", op="back")
        wait_for(
            lambda: reason_of(bob.of("users")[-1]["users"], "alice") == "",
            10,
            "bob sees alice back",
        )


def test_auto_away_minutes_from_the_command_line_or_the_config_file(tmp_path: Path) -> None:
    def options(*argv: str) -> float:
        args = build_parser().parse_args(["--host", "127.0.0.1", *argv])
        return options_from_args(args, "client").auto_away

    config = tmp_path / "config.toml"
    config.write_text("auto_away = 5\n")
    assert options("--config", str(config)) == 5
    assert options("--config", str(config), "--auto-away", "0") == 0
    for bad in ("-1", "nan", "inf", "1441"):
        with pytest.raises(SystemExit):
            options("--config", str(config), "--auto-away", bad)
    config.write_text('auto_away = "soon"\n')
    with pytest.raises(SystemExit):
        options("--config", str(config))
