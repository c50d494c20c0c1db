"""ChatSurface: what the command runner and the navigator need from the client screen.

They take this Protocol rather than the ClientScreen class, so the screen imports them and
they never import the screen back (no import circle inside tchat/ui).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Any, Protocol

from tchat.core.messages import RoomSummary
from tchat.ui.chat_model import Change, ChatModel
from tchat.ui.presence import Presence
from tchat.ui.search import SearchResults
from tchat.ui.service import ClientServiceLike
from tchat.ui.widgets.message_view import MessageView


class ChatSurface(Protocol):
    service: ClientServiceLike
    model: ChatModel
    wall: Callable[[], float]
    tz: tzinfo | None
    themes: Callable[[], list[str]]
    ops: dict[int, str]  # cmid -> what a non-chat operation was
    devices: tuple[bytes, ...]  # the account's keys as /devices last listed them
    join_wanted: set[str]
    found: SearchResults | None
    search_status: str
    desktop_notify: str
    directory: dict[str, RoomSummary]  # the cluster's rooms, as last answered
    list_wanted: str | None  # a /list pattern waiting for the directory's answer
    navigator: Any  # chat_navigation.Navigator (which takes a ChatSurface itself)
    presence: Presence  # away status: /away, /back, auto-away

    @property
    def app(self) -> Any: ...  # the running ClientApp (bell, theme, remember)

    @property
    def messages(self) -> MessageView: ...

    def say(self, text: str) -> None: ...

    def apply(self, change: Change) -> None: ...

    def open_conversation(self, key: str) -> None: ...

    def refresh_topic(self) -> None: ...

    def request_directory(self) -> bool: ...  # False: the service has no room directory

    @staticmethod
    def merge(a: Change, b: Change) -> Change: ...
