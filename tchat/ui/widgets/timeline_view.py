"""The Elections tab's view: dated, coloured timeline entries, wrapped at the real width."""

from __future__ import annotations

from datetime import datetime, tzinfo

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tchat.ui.timeline import TimelineEntry

_KIND_CLASS = {
    "election": "timeline-view--election",
    "lost": "timeline-view--bad",
    "down": "timeline-view--bad",
    "netsplit": "timeline-view--warn",
    "reconnect": "timeline-view--good",
    "resume": "timeline-view--warn",
    "netjoin": "timeline-view--good",
}


class TimelineView(VerticalScroll):
    """Set ``entries`` via ``show`` (attributes down); follows the end unless scrolled up."""

    COMPONENT_CLASSES = {
        "timeline-view--time",
        "timeline-view--kind",
        "timeline-view--election",
        "timeline-view--bad",
        "timeline-view--warn",
        "timeline-view--good",
    }

    def __init__(self, *, tz: tzinfo | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tz = tz
        self._entries: list[TimelineEntry] = []

    def compose(self) -> ComposeResult:
        yield Static(id="timeline-text")

    def show(self, entries: list[TimelineEntry]) -> None:
        self._entries = entries
        follow = self.is_vertical_scroll_end or self.max_scroll_y == 0
        self.query_one("#timeline-text", Static).update(self._render_entries())
        if follow:
            self.call_after_refresh(self.scroll_end, animate=False)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self.is_mounted and self._entries:
            self.query_one("#timeline-text", Static).update(self._render_entries())

    def _render_entries(self) -> Text:
        style = self.get_component_rich_style
        out = Text(end="")
        if not self._entries:
            out.append("no leader changes yet", style("timeline-view--time"))
        for index, entry in enumerate(self._entries):
            if index:
                out.append("\n")
            stamp = datetime.fromtimestamp(entry.ts, self.tz).strftime("%H:%M:%S")
            out.append(stamp + "  ", style("timeline-view--time"))
            kind_style = style(_KIND_CLASS.get(entry.kind, "timeline-view--kind"))
            out.append(f"{entry.kind[:12]:<10}", kind_style)
            out.append(entry.text)  # sanitised by the timeline; appended, never markup
        return out
