"""ChatSurface: what the command runner and the navigator need from the client screen.

They take this Protocol rather than the ClientScreen class, so the screen imports them and
they never import the screen back (no import circle inside tchat/ui).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Any, Protocol

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
    join_wanted: set[str]
    found: SearchResults | None
    search_status: str
    desktop_notify: str
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

    @staticmethod
    def merge(a: Change, b: Change) -> Change: ...
