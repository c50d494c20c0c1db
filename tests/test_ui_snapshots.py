"""Looks: every tab of the client, and the dashboard, at 100x30 with deterministic data."""

from __future__ import annotations

from datetime import UTC

import pytest
from textual.pilot import Pilot

from tchat.ui.app import DashboardApp
from tchat.ui.demo import FakeClock
from tchat.ui.demo_server import FakeServerService, populate_server
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
