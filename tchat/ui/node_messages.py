"""Textual messages that carry node events from the service listener up to the screens."""

from __future__ import annotations

from textual.message import Message

from tchat.core.effects import ClientEvent, Effect


class NodeEvent(Message):
    """One client event (chat, users, rooms, leader...), delivered in order, never dropped."""

    def __init__(self, event: ClientEvent, received: float | None = None) -> None:
        super().__init__()
        self.event = event
        self.received = received  # wall clock when the node reported it


class StatusTick(Message):
    """Something in the status bar may have changed: a newer one replaces a queued one."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StatusTick)


class ServerEffect(Message):
    """A log event or leader change from the local server node (dashboard)."""

    def __init__(self, effect: Effect, received: float | None = None) -> None:
        super().__init__()
        self.effect = effect
        self.received = received
