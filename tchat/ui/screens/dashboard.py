"""The server dashboard: ring, users, rooms, election log and clocks of the local server node."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, tzinfo

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, TabbedContent, TabPane

from tchat.core.status import ServerStatus
from tchat.ui.node_messages import ServerEffect
from tchat.ui.sanitize import safe_text
from tchat.ui.server_view import RingRow, ring_rows, room_rows, user_rows
from tchat.ui.service import ServerServiceLike
from tchat.ui.timeline import ElectionTimeline, TimelineEntry
from tchat.ui.widgets.clock_view import ClockView
from tchat.ui.widgets.status_bar import Status, StatusBar
from tchat.ui.widgets.timeline_view import TimelineView

log = logging.getLogger(__name__)


class DashboardScreen(Screen[None]):
    BINDINGS = [
        Binding("f1", "tab('ring')", "Ring"),
        Binding("f2", "tab('users')", "Users"),
        Binding("f3", "tab('rooms')", "Rooms"),
        Binding("f4", "tab('elections')", "Elections"),
        Binding("f5", "tab('clocks')", "Clocks"),
        Binding("s", "step_down", "Step down"),
        Binding("l", "app.quit", "Leave"),
    ]

    def __init__(
        self, service: ServerServiceLike, *, wall: Callable[[], float], tz: tzinfo | None = None
    ) -> None:
        super().__init__()
        self.service = service
        self.wall = wall
        self.tz = tz
        self.timeline = ElectionTimeline()
        self._seen: dict[str, object] = {}

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        with TabbedContent(id="tabs", initial="ring"):
            with TabPane("Ring", id="ring"):
                yield DataTable(id="ring-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Users", id="users"):
                yield DataTable(id="users-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Rooms", id="rooms"):
                yield DataTable(id="rooms-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Elections", id="elections"):
                yield TimelineView(id="timeline", tz=self.tz)
            with TabPane("Clocks", id="clocks"):
                yield ClockView(id="clock-view")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#ring-table", DataTable).add_columns(
            "id", "address", "role", "epoch", "live", "lag"
        )
        self.query_one("#users-table", DataTable).add_columns("user", "address", "status", "since")
        self.query_one("#rooms-table", DataTable).add_columns(
            "room", "group", "members", "messages", "who"
        )
        self.query_one(ClockView).title = "log clock"
        self.refresh_views()
        self.set_interval(0.5, self.refresh_views)

    # -- effects ----------------------------------------------------------------------
    def on_server_effect(self, message: ServerEffect) -> None:
        wall = message.received if message.received is not None else self.wall()
        self._timeline(self.timeline.server_effect(message.effect, wall))
        self.refresh_views()

    def _timeline(self, entries: list[TimelineEntry]) -> None:
        if entries:
            self.query_one(TimelineView).show(self.timeline.entries)

    def refresh_views(self) -> None:
        try:
            self._refresh_views()
        except Exception:  # a surprise in the node's shape must not take the dashboard down
            log.exception("dashboard refresh failed")

    def _refresh_views(self) -> None:
        status = self.service.status()
        if status.role == "STARTING":  # still starting: nothing to show yet
            self.query_one(StatusBar).status = Status(state="STARTING")
            return
        leader = status.leader_id
        addr = next((p.addr for p in status.peers if p.server_id == leader), "")
        rows = ring_rows(status)
        live = sum(1 for r in rows if r.live.startswith(("yes", "self")))
        self.query_one(StatusBar).status = Status(
            state=status.role,
            user=f"server {status.server_id}",
            leader=f"{leader}@{addr}" if leader else "",
            epoch=status.epoch,
            client=False,
            extras=(("live", f"{live}/{len(status.peers)}"), ("log", f"{status.log_size} entries")),
        )
        self._ring(status, rows)
        self._users(status)
        self._rooms(status)
        self._clocks(status)

    def _changed(self, key: str, value: object) -> bool:
        if self._seen.get(key) == value:
            return False
        self._seen[key] = value
        return True

    def _ring(self, status: ServerStatus, rows: list[RingRow]) -> None:
        cells = [
            (f"{r.server_id}{' *' if r.me else ''}", r.addr, r.role, status.epoch, r.live, r.lag)
            for r in rows
        ]
        if self._changed("ring", cells):
            table = self.query_one("#ring-table", DataTable)
            table.clear()
            for row in cells:
                table.add_row(*(safe_text(cell) for cell in row))

    def _users(self, status: ServerStatus) -> None:
        rows = [
            (name, addr, state, datetime.fromtimestamp(since, self.tz).strftime("%H:%M:%S"))
            for name, addr, state, since in user_rows(status)
        ]
        if self._changed("users", rows):
            table = self.query_one("#users-table", DataTable)
            table.clear()
            for row in rows:
                table.add_row(*(safe_text(cell) for cell in row))

    def _rooms(self, status: ServerStatus) -> None:
        rows = [
            (
                "#" + room.name,
                room.group,
                str(len(room.members)),
                "–" if room.messages is None else str(room.messages),
                ", ".join(room.members)[:60],
            )
            for room in room_rows(status)
        ]
        if self._changed("rooms", rows):
            table = self.query_one("#rooms-table", DataTable)
            table.clear()
            for row in rows:
                table.add_row(*(safe_text(cell) for cell in row))

    def _clocks(self, status: ServerStatus) -> None:
        if not self._changed("clock", (status.clock, status.log_size)):
            return
        view = self.query_one(ClockView)
        view.clock = status.clock
        view.entries = list(status.recent)
        view.refresh()

    # -- keys -------------------------------------------------------------------------
    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    async def action_step_down(self) -> None:
        if self.service.status().role != "LEADER":
            self.notify("only the leader can step down", severity="warning")
            return
        if not self.service.step_down():
            self.notify("the server node is not running", severity="warning")
            return
        self.notify("stepping down: the ring elects a successor")
