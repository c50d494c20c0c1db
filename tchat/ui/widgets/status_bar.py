"""One line of cluster status: connection state, leader, epoch, round trip, delivery mode."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tchat.ui.sanitize import sanitize


@dataclass(frozen=True, slots=True)
class Status:
    state: str = "DISCOVERING"
    user: str = ""
    leader: str = ""  # "id@addr" or ""
    epoch: str = ""
    rtt_ms: float | None = None
    delivery: str = ""  # "multicast" | "unicast" | ""
    pending: int = 0
    client: bool = True  # a client shows round trip and delivery mode; a server does not
    extras: tuple[tuple[str, str], ...] = ()
    activity: tuple[tuple[int, bool], ...] = ()  # (window number, mentioned) with unread lines


class StatusBar(Widget):
    """Rendered from a ``Status`` set by the screen (attributes down)."""

    COMPONENT_CLASSES = {
        "status-bar--ok",
        "status-bar--warn",
        "status-bar--bad",
        "status-bar--key",
        "status-bar--activity",
        "status-bar--mention",
    }
    status: reactive[Status] = reactive(Status, layout=False)

    def render(self) -> Text:
        s = self.status
        style = self.get_component_rich_style
        state_style = {
            "SERVING": "status-bar--ok",
            "FAILED": "status-bar--bad",
            "CLOSED": "status-bar--bad",
        }.get(s.state, "status-bar--warn")
        if s.state.startswith("disconnected"):
            state_style = "status-bar--bad"
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(f" {s.state.lower()} ", style(state_style))
        if s.activity:
            # First, as irssi has it: the part that matters most survives a narrow terminal.
            text.append(" [Act: ", style("status-bar--key"))
            for index, (number, mention) in enumerate(s.activity):
                if index:
                    text.append(",", style("status-bar--key"))
                kind = "status-bar--mention" if mention else "status-bar--activity"
                text.append(str(number), style(kind))
            text.append("]", style("status-bar--key"))
        if s.user:
            text.append(" " + sanitize(s.user))
        parts = [("leader", s.leader or "?"), ("epoch", s.epoch or "?")]
        if s.state.startswith("disconnected"):
            parts = []  # no leader, epoch or round trip to speak of: say only what waits
        elif s.client:
            parts.append(("rtt", f"{s.rtt_ms:.1f} ms" if s.rtt_ms is not None else "–"))
            parts.append(("via", s.delivery or "–"))
        parts.extend(s.extras)
        if s.pending:
            parts.append(("pending", str(s.pending)))
        for key, value in parts:
            text.append("  ")
            text.append(key + " ", style("status-bar--key"))
            text.append(sanitize(value))
        return text
