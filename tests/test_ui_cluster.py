"""The client app against a real loopback cluster: 3 daemons, the TUI's ClientService in-process."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tchat.runtime.client_service import ClientService
from tchat.ui.app import ClientApp
from tchat.ui.screens.client import ClientScreen
from tchat.ui.widgets.composer import Composer
from tests.cluster_harness import Cluster

pytestmark = pytest.mark.timeout(90)


def screen_text(pilot: Pilot[int]) -> str:
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())


async def until(
    pilot: Pilot[int], condition: Callable[[], object], what: str, timeout: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.02)


async def type_line(pilot: Pilot[int], text: str) -> None:
    composer = pilot.app.screen.query_one(Composer)
    composer.focus()
    composer.value = text
    await pilot.press("enter")
    await pilot.pause()


async def test_tui_chats_with_a_headless_user_and_survives_failover(tmp_path: Path) -> None:

    from tchat.runtime.options import NetOptions

    with Cluster(tmp_path) as cluster:
        daemons = [cluster.daemon(server_id=i, wait=False) for i in (1, 2, 3)]
        daemons = [d.started() for d in daemons]
        bob = cluster.client("bob")
        bob.wait_event("ready", 15)
        bob.send("/join lobby")
        bob.wait_event("joined", room="lobby")
        options = NetOptions(
            host="127.0.0.1",
            discovery_port=cluster.discovery_port,
            multicast_port=cluster.multicast_port,
            user="alice",
        )
        app = ClientApp(
            lambda name: ClientService(options, name), user="alice", config=None, tz=UTC
        )
        async with app.run_test(size=(100, 30)) as pilot:
            try:
                await until(pilot, lambda: isinstance(app.screen, ClientScreen), "the screen")
                screen: ClientScreen = app.screen  # type: ignore[assignment]
                await until(pilot, lambda: "serving" in screen_text(pilot), "serving")
                await type_line(pilot, "/join lobby")
                await until(pilot, lambda: screen.model.active == "#lobby", "#lobby open")
                await until(
                    pilot,
                    lambda: "bob" in screen.model.conversation("#lobby").members,
                    "bob among the members",
                )
                await type_line(pilot, "hello from the tui")
                got = bob.wait_event("message", text="hello from the tui")
                assert got["from"] == "alice" and got["room"] == "lobby"
                await until(
                    pilot,
                    lambda: not screen.model.conversation("#lobby").lines[-1].pending,
                    "the ack",
                )
                rtt = app.service.status().rtt_ms  # type: ignore[union-attr]
                assert rtt is not None and rtt < 1000
                await until(pilot, lambda: " rtt " in screen_text(pilot), "the round trip shown")
                assert " ack " not in screen_text(pilot)  # measured once, shown once
                bob.send("/say lobby [bold]hi[/bold] alice")
                await until(
                    pilot,
                    lambda: "<bob> [bold]hi[/bold] alice" in screen_text(pilot),
                    "bob's message, literally",
                )
                bob.send("/msg alice psst")
                await until(
                    pilot,
                    lambda: screen.model.conversation("@bob").unread == 1,
                    "an unread private message",
                )

                leader = cluster.leader_of(daemons)
                old_epoch = app.service.status().epoch  # type: ignore[union-attr]
                leader.kill()
                await until(
                    pilot,
                    lambda: (
                        app.service.status().epoch != old_epoch  # type: ignore[union-attr]
                        and screen.timeline.leader_id not in (0, leader.server_id)
                    ),
                    "a new leader",
                    timeout=20,
                )
                await type_line(pilot, "after the failover")
                bob.wait_event("message", text="after the failover", timeout=15)
                kinds = {entry.kind for entry in screen.timeline.entries}
                assert kinds & {"leader", "election"}, kinds
                await pilot.press("f4")
                await pilot.pause()
                assert f"leader {leader.server_id}" in screen_text(pilot)
            finally:
                await app.shutdown_service()
