"""The server dashboard over a scripted server service: ring, users, rooms, log, keys."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import DataTable, TabbedContent

from tchat.ui.app import DashboardApp
from tchat.ui.demo import FakeClock
from tchat.ui.demo_server import FakeServerService, populate_server
from tchat.ui.screens.dashboard import DashboardScreen


def screen_text(pilot: Pilot[int]) -> str:
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())


async def until(pilot: Pilot[int], condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await pilot.pause(0.01)


def dashboard() -> tuple[DashboardApp, FakeServerService]:
    service = FakeServerService()
    return DashboardApp(service, config=None, wall=FakeClock(), tz=UTC), service


async def test_dashboard_shows_ring_users_rooms_and_log() -> None:
    app, service = dashboard()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        populate_server(service)
        await pilot.pause()
        screen = app.screen
        ring = screen.query_one("#ring-table", DataTable)
        await until(pilot, lambda: ring.row_count == 3)
        text = screen_text(pilot)
        assert "2 *" in text and "LEADER" in text and "14" in text
        await pilot.press("f2")
        await pilot.pause()
        assert screen.query_one("#users-table", DataTable).row_count == 4
        assert "away" in screen_text(pilot)
        await pilot.press("f3")
        await pilot.pause()
        assert "239.255.42.2:47471" in screen_text(pilot)
        await pilot.press("f4")
        await until(pilot, lambda: "elected 2" in screen_text(pilot))
        assert "leader 1 silent" in screen_text(pilot)
        await pilot.press("f5")
        await pilot.pause()
        assert "concurrent pairs: 1" in screen_text(pilot)
        assert screen.query_one(TabbedContent).active == "clocks"


async def test_step_down_and_leave_keys() -> None:
    app, service = dashboard()
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        populate_server(service)
        await pilot.pause()
        await pilot.press("s")
        await until(pilot, lambda: service.stepped_down)
        await pilot.press("s")  # now a backup: refused with a notice, nothing called twice
        await pilot.pause()
        await pilot.press("l")
        await until(pilot, lambda: service.stopped)
    assert app.return_value == 0


async def test_dashboard_over_a_real_server_service(tmp_path: Path) -> None:
    """The wiring tchat.runtime.modes does for ``tchat --server``: a real node's snapshot."""
    from tchat.runtime.options import NetOptions
    from tchat.runtime.server_service import ServerService

    port = random.randrange(20000, 32000)
    options = NetOptions(
        host="127.0.0.1",
        discovery_port=port,
        multicast_port=port + 1,
        server_id=7,
        data_dir=tmp_path / "s7",
    )
    service = ServerService(options)
    app = DashboardApp(service, config=None, tz=UTC)
    async with app.run_test(size=(100, 30)) as pilot:
        try:
            await until(pilot, lambda: "leader 7@127.0.0.1:" in screen_text(pilot), 15.0)
            assert service.status().role == "LEADER"
            ring = app.screen.query_one("#ring-table", DataTable)
            await until(pilot, lambda: ring.row_count == 1)
            assert "7 *" in screen_text(pilot)
        finally:
            await service.stop()
