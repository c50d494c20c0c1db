"""The server dashboard: ring, users, rooms, election log and clocks of the local server node."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from datetime import datetime, tzinfo
from itertools import islice
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, TabbedContent, TabPane

from tchat.core.messages import Chat
from tchat.ui.node_messages import ServerEffect
from tchat.ui.sanitize import safe_text
from tchat.ui.server_view import ring_rows, room_rows, user_rows
from tchat.ui.service import ServerServiceLike, state_name
from tchat.ui.timeline import ElectionTimeline, TimelineEntry
from tchat.ui.widgets.clock_view import ClockView
from tchat.ui.widgets.status_bar import Status, StatusBar
from tchat.ui.widgets.timeline_view import TimelineView

log = logging.getLogger(__name__)
RECENT = 40


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
        node = self.service.node
        if node is None:  # still starting: nothing to show yet
            self.query_one(StatusBar).status = Status(state="STARTING")
            return
        role = state_name(node.role)
        leader = node.leader_id
        addr = next((s.addr for s in node.servers if s.server_id == leader), "")
        rows = ring_rows(node, _loop_time(), self._peer_timeout(node))
        live = sum(1 for r in rows if r.live.startswith(("yes", "self")))
        self.query_one(StatusBar).status = Status(
            state=role,
            user=f"server {node.server_id}",
            leader=f"{leader}@{addr}" if leader else "",
            epoch=str(node.epoch),
            client=False,
            extras=(("live", f"{live}/{len(node.servers)}"), ("log", f"{len(node.log)} entries")),
        )
        self._ring(node)
        self._users(node)
        self._rooms(node)
        self._clocks(node)

    def _changed(self, key: str, value: object) -> bool:
        if self._seen.get(key) == value:
            return False
        self._seen[key] = value
        return True

    def _ring(self, node: Any) -> None:
        rows = ring_rows(node, _loop_time(), self._peer_timeout(node))
        cells = [
            (f"{r.server_id}{' *' if r.me else ''}", r.addr, r.role, str(node.epoch), r.live, r.lag)
            for r in rows
        ]
        if self._changed("ring", cells):
            table = self.query_one("#ring-table", DataTable)
            table.clear()
            for row in cells:
                table.add_row(*(safe_text(cell) for cell in row))

    @staticmethod
    def _peer_timeout(node: Any) -> float:
        timing = getattr(getattr(node, "config", None), "timing", None)
        return float(getattr(timing, "leader_timeout", 0.25)) * 2

    def _users(self, node: Any) -> None:
        rows = [
            (name, addr, status, datetime.fromtimestamp(since, self.tz).strftime("%H:%M:%S"))
            for name, addr, status, since in user_rows(node)
        ]
        if self._changed("users", rows):
            table = self.query_one("#users-table", DataTable)
            table.clear()
            for row in rows:
                table.add_row(*(safe_text(cell) for cell in row))

    def _rooms(self, node: Any) -> None:
        rows = [
            (
                "#" + name,
                group,
                str(len(members)),
                "–" if n is None else str(n),
                ", ".join(members)[:60],
            )
            for name, group, members, n in room_rows(node)
        ]
        if self._changed("rooms", rows):
            table = self.query_one("#rooms-table", DataTable)
            table.clear()
            for row in rows:
                table.add_row(*(safe_text(cell) for cell in row))

    def _clocks(self, node: Any) -> None:
        node_log = node.log  # type: ignore[attr-defined]
        if not self._changed("clock", (node_log.clock, len(node_log))):
            return
        entries = node_log.window()  # the recent entries, in memory (the log is on disk)
        recent = [e for e in islice(reversed(entries), 0, 4 * RECENT) if isinstance(e.body, Chat)]
        view = self.query_one(ClockView)
        view.clock = node_log.clock
        view.entries = list(reversed(recent[:RECENT]))
        view.refresh()

    # -- keys -------------------------------------------------------------------------
    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    async def action_step_down(self) -> None:
        step_down = getattr(self.service, "step_down", None)
        if step_down is None:
            self.notify("this server build cannot step down on request", severity="warning")
            return
        if state_name(self.service.node.role) != "LEADER":
            self.notify("only the leader can step down", severity="warning")
            return
        result = step_down()
        if inspect.isawaitable(result):
            result = await result
        if result is False:  # the service has it, the core node does not (yet)
            self.notify(
                "this server's core cannot step down on request; 'l' leaves instead",
                severity="warning",
            )
            return
        self.notify("stepping down: the ring elects a successor")


def _loop_time() -> float | None:
    """The node's clock: the runtime passes the event loop's time as ``now``."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return None
