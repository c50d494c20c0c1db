"""Rooms and Members tables and the member list beside a conversation, drawn from the model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo

from rich.text import Text
from textual.widgets import DataTable, Static

from tchat.core.messages import RoomSummary
from tchat.ui.chat_model import Conversation, UserRow
from tchat.ui.sanitize import safe_text, sanitize

_MARKS = {"away": "~", "gone": "x"}


def _clock(ts: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%H:%M:%S") if ts else "–"


class RoomsTable(DataTable[Text]):
    """Every room this client knows: group, members, activity. Row keys are "#room"."""

    def __init__(self, *, tz: tzinfo | None = None, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.tz = tz

    def on_mount(self) -> None:
        self.add_columns("room", "group", "members", "who", "messages", "last activity", "joined")

    def show(
        self, rooms: Iterable[Conversation], directory: Mapping[str, RoomSummary] | None = None
    ) -> None:
        """Rooms this client is or was in, then the rest of the cluster's directory."""
        self.clear()
        known: set[str] = set()
        for conv in rooms:
            known.add(conv.name)
            members = sorted(conv.members, key=str.lower)
            who = ", ".join(members[:6]) + ("…" if len(members) > 6 else "")
            self.add_row(
                safe_text("#" + conv.name),
                Text(conv.group or "–"),
                Text(str(len(members))),
                safe_text(who),
                Text(str(conv.messages)),
                Text(_clock(conv.last_activity, self.tz)),
                Text("yes" if conv.joined else "no"),
                key=conv.key,
            )
        for name, summary in sorted((directory or {}).items()):
            if name in known:
                continue
            members = sorted(summary.members, key=str.lower)
            who = ", ".join(members[:6]) + ("…" if summary.member_count > 6 else "")
            self.add_row(
                safe_text("#" + name),
                Text(summary.group or "–"),
                Text(str(summary.member_count)),
                safe_text(who),
                Text(str(summary.messages)),
                Text(_clock(summary.last_ts, self.tz)),
                Text("no"),
                key="#" + name,
            )


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
