"""The list of conversations (status, rooms, private chats) with unread counts and mentions."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from tchat.ui.chat_model import Conversation, Kind
from tchat.ui.sanitize import sanitize


class ConversationList(OptionList, can_focus=False):
    """Option ids are conversation keys; the screen handles ``OptionList.OptionSelected``.

    Clicked, never focused: Alt+1..9, Alt+A and Ctrl+N/P switch from the composer.
    """

    COMPONENT_CLASSES = {
        "conversation-list--unread",
        "conversation-list--mention",
        "conversation-list--left",
        "conversation-list--number",
    }

    def show(self, conversations: list[Conversation], active: str) -> None:
        style = self.get_component_rich_style
        options = []
        for number, conv in enumerate(conversations, 1):
            label = Text(no_wrap=True, overflow="ellipsis", end="")
            if number < 10:  # Alt+1..9 reach these
                label.append(f"{number} ", style("conversation-list--number"))
            else:
                label.append("  ")
            name = "status" if conv.kind is Kind.SYSTEM else sanitize(conv.key)
            label.append(
                name,
                style("conversation-list--left")
                if (conv.kind is Kind.ROOM and not conv.joined)
                else "",
            )
            if conv.unread:
                badge_style = (
                    "conversation-list--mention"
                    if conv.mentioned
                    else ("conversation-list--unread")
                )
                label.append(f" {conv.unread}", style(badge_style))
            options.append(Option(label, id=conv.key))
        keys = [conv.key for conv in conversations]
        self.clear_options()
        self.add_options(options)
        if active in keys:
            self.highlighted = keys.index(active)
