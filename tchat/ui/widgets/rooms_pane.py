"""The Rooms tab: the cluster's room directory, a name field and Join/Leave buttons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Input

from tchat.ui.widgets.directory import RoomsTable


class RoomsPane(Vertical):
    """Posts ``RoomsPane.Command`` (a /join or /leave line) and ``RoomsPane.Open``."""

    @dataclass
    class Command(Message):
        line: str  # "/join NAME" or "/leave NAME": the screen runs it like a typed line

    @dataclass
    class Open(Message):
        key: str  # a conversation key picked in the table

    def __init__(self, *, tz: tzinfo | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tz = tz

    def compose(self) -> ComposeResult:
        yield RoomsTable(id="rooms-table", tz=self.tz)
        with Horizontal(id="room-actions"):
            yield Input(placeholder="room name", id="room-name")
            yield Button("Join / create", id="room-join", variant="primary")
            yield Button("Leave", id="room-leave")

    @on(Button.Pressed, "#room-join")
    @on(Input.Submitted, "#room-name")
    def _join(self, event: Message) -> None:
        event.stop()
        self.post_message(self.Command("/join " + self._room_field()))

    @on(Button.Pressed, "#room-leave")
    def _leave(self, event: Message) -> None:
        event.stop()
        self.post_message(self.Command("/leave " + self._room_field()))

    def _room_field(self) -> str:
        """The typed name, else the selected row's room."""
        field = self.query_one("#room-name", Input)
        name = field.value.strip()
        if not name:
            table = self.query_one("#rooms-table", DataTable)
            if table.row_count:
                key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
                name = (key or "")[1:]
        field.value = ""
        return name

    @on(DataTable.RowSelected, "#rooms-table")
    def _picked(self, message: DataTable.RowSelected) -> None:
        message.stop()
        if message.row_key.value:
            self.post_message(self.Open(message.row_key.value))
