"""Moving about the client screen from the composer, and what asks for attention there.

Scrolling, conversation keys (Alt+1..9, Alt+A), /search steps, the bell and desktop notes,
and the outage lines. Like the command runner, it acts on the screen it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tchat.ui.attention import desktop_note, should_alert
from tchat.ui.chat_model import Change, Kind
from tchat.ui.outbox import last_committed
from tchat.ui.widgets.composer import Composer

if TYPE_CHECKING:
    from tchat.ui.screens.chat_surface import ChatSurface


class Navigator:
    def __init__(self, screen: ChatSurface) -> None:
        self.screen = screen

    def navigate(self, message: Composer.Navigate) -> None:
        screen = self.screen
        view = screen.messages
        match message.action:
            case "page_up":
                view.page(-1)
            case "page_down":
                view.page(1)
            case "home":
                view.action_scroll_home()
            case "end":
                view.action_scroll_end()
            case "activity":
                key = screen.model.next_active()
                if key is None:
                    screen.app.bell()
                else:
                    screen.open_conversation(key)
            case "match":
                self.show_match(message.number)
            case "window":
                keys = [c.key for c in screen.model.ordered()]
                if 1 <= message.number <= len(keys):
                    screen.open_conversation(keys[message.number - 1])

    def show_match(self, step: int) -> None:
        """Show the current /search match (after ``step``), opening its conversation."""
        screen = self.screen
        found = screen.found
        if found is None:
            screen.app.bell()
            return
        hit = found.step(step) if step else found.current()
        if hit is not None:
            key, line = hit
            if key != screen.model.active:
                screen.open_conversation(key)
            screen.messages.search(found.needle, line)
        screen.search_status = found.label()
        screen.refresh_topic()

    def alert(self, change: Change) -> None:
        """Bell (and, when set, a desktop note) for someone else's message, by notify level."""
        screen = self.screen
        if not change.new:
            return
        for key in change.conversations:
            conv = screen.model.conversation(key)
            line = last_committed(conv)  # our pending lines sit below it
            if line is None or line.notice or line.sender == screen.model.me:
                continue
            level = screen.model.notify_level(conv)
            if should_alert(level, mention=line.mention, private=conv.kind is Kind.PRIVATE):
                screen.app.bell()
                note = desktop_note(screen.desktop_notify, f"tchat {conv.key}", line.text)
                driver = getattr(screen.app, "_driver", None)
                if note and driver is not None and not screen.app.is_headless:
                    driver.write(note)  # as App.bell does: in order with the frames

    def outage_line(self, line: str | None, wall: float) -> None:
        """One line marks an outage, one the recovery: in every conversation, as irssi does."""
        if line is None:
            return
        screen = self.screen
        change = Change()
        for key in list(screen.model.conversations):
            change = screen.merge(change, screen.model.notice(line, wall, key))
        screen.apply(change)
