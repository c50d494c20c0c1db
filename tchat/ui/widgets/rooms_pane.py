"""The Rooms tab: the cluster's room directory, a filter line and Join/Leave buttons.

It behaves like a channel list in weechat or irssi: Enter on a room joins it (or opens it
when joined), typing in the line filters the rooms by name or topic and Enter there joins
(or creates) the room typed; the keys show in the footer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Input

from tchat.ui.widgets.directory import RoomsTable


class RoomFilter(Input):
    """The filter line: Down goes to the rooms, Escape clears it and goes there too."""

    BINDINGS = [
        Binding("down", "to_table", "Rooms", show=False),
        Binding("escape", "clear_filter", "Clear filter"),
        Binding("enter", "submit", "Join/create"),
    ]

    def action_to_table(self) -> None:
        self.screen.query_one(RoomsTable).focus()

    def action_clear_filter(self) -> None:
        self.value = ""
        self.action_to_table()


class RoomsPane(Vertical):
    """Posts ``RoomsPane.Command`` (a /join or /leave line), ``RoomsPane.Open`` (a room
    picked in the table: join it or open it) and ``RoomsPane.Refresh``."""

    @dataclass
    class Command(Message):
        line: str  # "/join NAME" or "/leave NAME": the screen runs it like a typed line

    @dataclass
    class Open(Message):
        key: str  # a conversation key picked in the table

    class Refresh(Message):
        """Ask the cluster for its rooms again."""

    def __init__(self, *, tz: tzinfo | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tz = tz

    def compose(self) -> ComposeResult:
        yield RoomsTable(id="rooms-table", tz=self.tz)
        with Horizontal(id="room-actions"):
            yield RoomFilter(placeholder="filter, or a room to join (Enter)", id="room-name")
            yield Button("Join / create", id="room-join", variant="primary")
            yield Button("Leave", id="room-leave")

    @on(Input.Changed, "#room-name")
    def _filter(self, event: Input.Changed) -> None:
        event.stop()
        table = self.query_one(RoomsTable)
        table.filter = event.value.strip()
        table.redraw()

    @on(Button.Pressed, "#room-join")
    @on(Input.Submitted, "#room-name")
    def _join(self, event: Message) -> None:
        event.stop()
        name = self._room_field()
        if name:
            self.post_message(self.Command("/join " + name))

    @on(Button.Pressed, "#room-leave")
    def _leave_button(self, event: Message) -> None:
        event.stop()
        name = self._room_field()
        if name:
            self.post_message(self.Command("/leave " + name))

    @on(RoomsTable.Leave)
    def _leave_key(self, event: RoomsTable.Leave) -> None:
        event.stop()
        key = event.table.selected_key()
        if key:
            self.post_message(self.Command("/leave " + key[1:]))

    @on(RoomsTable.Find)
    def _find(self, event: RoomsTable.Find) -> None:
        event.stop()
        if event.refresh_rooms:
            self.post_message(self.Refresh())
        else:
            self.query_one(RoomFilter).focus()

    def _room_field(self) -> str:
        """The typed name, else the selected row's room; the line is cleared (and with it
        the filter)."""
        field = self.query_one("#room-name", Input)
        name = field.value.strip().lstrip("#")
        if not name:
            name = (self.query_one(RoomsTable).selected_key() or "")[1:]
        field.value = ""
        return name

    @on(DataTable.RowSelected, "#rooms-table")
    def _picked(self, message: DataTable.RowSelected) -> None:
        message.stop()
        if message.row_key.value:
            self.post_message(self.Open(message.row_key.value))
