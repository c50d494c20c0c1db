"""Looks: every tab of the client, and the dashboard, at 100x30 with deterministic data."""

from __future__ import annotations

from datetime import UTC

import pytest
from textual.pilot import Pilot

from tchat.core.effects import ConnectionChanged
from tchat.ui.app import DashboardApp
from tchat.ui.demo import FakeClock, FakeState
from tchat.ui.demo_server import FakeServerService, populate_server
from tchat.ui.node_messages import StatusTick
from tchat.ui.screenshots import SIZE, demo_app, stage


@pytest.mark.parametrize("tab", ["chat", "rooms", "members", "elections", "clocks"])
def test_client_tab(snap_compare: object, tab: str) -> None:
    app, demo = demo_app()

    async def run_before(pilot: Pilot[int]) -> None:
        await stage(pilot, demo, tab)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)  # type: ignore[operator]


def test_client_light_theme_chat(snap_compare: object) -> None:
    app, demo = demo_app(theme="light")

    async def run_before(pilot: Pilot[int]) -> None:
        await stage(pilot, demo, "chat")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)  # type: ignore[operator]


def test_dashboard_ring(snap_compare: object) -> None:
    service = FakeServerService()
    app = DashboardApp(service, config=None, wall=FakeClock(), tz=UTC)

    async def run_before(pilot: Pilot[int]) -> None:
        populate_server(service)
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)  # type: ignore[operator]


def test_client_read_marker_multiline_and_activity(snap_compare: object) -> None:
    """A paste shown under its nick, the "new" rule where you left, [Act: ...] in the bar."""
    app, demo = demo_app()

    async def run_before(pilot: Pilot[int]) -> None:
        await stage(pilot, demo, "chat")
        demo.service.say("alice", "a paste:\n  first line\n  second line", room="general")
        await pilot.press("alt+1")
        demo.service.say("carol", "while you were away", room="general")
        demo.service.say("bob", "ping", to="you")
        await pilot.press("alt+2")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)  # type: ignore[operator]


def test_client_outage_and_more_marker(snap_compare: object) -> None:
    """Scrolled up during an outage: "-- more (N new) --", the outage line, the red state."""
    app, demo = demo_app()

    async def run_before(pilot: Pilot[int]) -> None:
        await stage(pilot, demo, "chat")
        for i in range(30):
            demo.service.say("bob", f"backlog line {i}", room="general")
        await pilot.pause()
        await pilot.press("pageup")
        demo.service.node.state = FakeState.DISCOVERING
        demo.service.emit(ConnectionChanged("discovering", "leader silent"))
        demo.clock.now += 2
        demo.service.say("alice", "said during the outage", room="general")
        app.screen.post_message(StatusTick())
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)  # type: ignore[operator]
