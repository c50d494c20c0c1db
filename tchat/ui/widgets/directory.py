"""Rooms and Members tables and the member list beside a conversation, drawn from the model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Static

from tchat.core.messages import RoomSummary
from tchat.ui.chat_model import Conversation, UserRow
from tchat.ui.sanitize import safe_text, sanitize

_MARKS = {"away": "~", "gone": "x"}


def _clock(ts: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%H:%M:%S") if ts else "–"


TOPIC_CELL = 48  # characters of a topic the table shows (the chat header shows it whole)


def _topic_cell(topic: str) -> Text:
    cell = safe_text(topic or "–")
    cell.truncate(TOPIC_CELL, overflow="ellipsis")
    return cell


class RoomsTable(DataTable[Text]):
    """Every room this client knows: members, topic, activity. Row keys are "#room".

    Enter on a row joins the room (or opens it, when joined): the pane turns the table's
    RowSelected into that. ``filter`` keeps the rows whose name or topic holds it."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Join/open"),
        Binding("delete", "leave", "Leave"),
        Binding("slash", "find", "Filter"),
        Binding("ctrl+r", "refresh_rooms", "Refresh"),
    ]

    def __init__(self, *, tz: tzinfo | None = None, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.tz = tz
        self.filter = ""
        self._shown: tuple[list[Conversation], dict[str, RoomSummary]] = ([], {})

    def on_mount(self) -> None:
        self.add_columns("room", "members", "topic", "who", "messages", "last activity", "joined")
        self.add_column("group")

    def action_leave(self) -> None:
        self.post_message(RoomsTable.Leave(self))

    def action_find(self) -> None:
        self.post_message(RoomsTable.Find(self))

    def action_refresh_rooms(self) -> None:
        self.post_message(RoomsTable.Find(self, refresh=True))

    class Leave(Message):
        """Leave the highlighted room (Delete)."""

        def __init__(self, table: RoomsTable) -> None:
            super().__init__()
            self.table = table

    class Find(Message):
        """Focus the filter line (/), or ask the cluster again (Ctrl+R)."""

        def __init__(self, table: RoomsTable, refresh: bool = False) -> None:
            super().__init__()
            self.table = table
            self.refresh_rooms = refresh

    def matches(self, name: str, topic: str) -> bool:
        needle = self.filter.lower().lstrip("#")
        return not needle or needle in name.lower() or needle in topic.lower()

    def show(
        self, rooms: Iterable[Conversation], directory: Mapping[str, RoomSummary] | None = None
    ) -> None:
        """Rooms this client is or was in, then the rest of the cluster's directory."""
        self._shown = (list(rooms), dict(directory or {}))
        self.redraw()

    def redraw(self) -> None:
        """The rows again, under the current filter; the cursor stays on its room."""
        rooms, directory = self._shown
        was = self.selected_key()
        self.clear()
        known: set[str] = set()
        for conv in rooms:
            known.add(conv.name)
            if not self.matches(conv.name, conv.topic):
                continue
            members = sorted(conv.members, key=str.lower)
            who = ", ".join(members[:6]) + ("…" if len(members) > 6 else "")
            self.add_row(
                safe_text("#" + conv.name),
                Text(str(len(members))),
                _topic_cell(conv.topic),
                safe_text(who),
                Text(str(conv.messages)),
                Text(_clock(conv.last_activity, self.tz)),
                Text("yes" if conv.joined else "no"),
                Text(conv.group or "–"),
                key=conv.key,
            )
        for name, summary in sorted(directory.items()):
            if name in known or not self.matches(name, summary.topic):
                continue
            members = sorted(summary.members, key=str.lower)
            who = ", ".join(members[:6]) + ("…" if summary.member_count > 6 else "")
            self.add_row(
                safe_text("#" + name),
                Text(str(summary.member_count)),
                _topic_cell(summary.topic),
                safe_text(who),
                Text(str(summary.messages)),
                Text(_clock(summary.last_ts, self.tz)),
                Text("no"),
                Text(summary.group or "–"),
                key="#" + name,
            )
        if was is not None and was in self.rows:
            self.move_cursor(row=self.get_row_index(was))

    def selected_key(self) -> str | None:
        """The highlighted row's key ("#room"), if any."""
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value


class UsersTable(DataTable[Text]):
    """Every user seen: address, online/away/gone and since when."""

    def __init__(self, *, tz: tzinfo | None = None, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.tz = tz

    def on_mount(self) -> None:
        self.add_columns("user", "address", "status", "since", "away reason")

    def show(self, users: Mapping[str, UserRow]) -> None:
        self.clear()
        for name in sorted(users, key=str.lower):
            row = users[name]
            dim = "dim" if row.status != "online" else ""
            self.add_row(
                safe_text(row.name, dim),
                safe_text(row.addr, dim),
                Text(row.status, dim),
                Text(_clock(row.since, self.tz), dim),
                safe_text(row.reason, dim),
                key=name,
            )


class MemberList(Static):
    """Who is in the current conversation; "~" marks away (dimmed, with the reason), "x" gone."""

    def show(self, names: list[str], users: Mapping[str, UserRow]) -> None:
        text = Text(end="", no_wrap=True, overflow="ellipsis")
        text.append(f"{len(names)} here\n", "bold")
        for name in names:
            row = users.get(name)
            status = row.status if row else ""
            line = f"{_MARKS.get(status, ' ')}{sanitize(name)}"
            if status == "online" or row is None:
                text.append(line + "\n")
                continue
            text.append(line, "dim")
            if row.reason:  # cut to the pane's width by its overflow, never wrapped
                text.append(f" {sanitize(row.reason)}", "dim italic")
            text.append("\n")
        self.update(text)
