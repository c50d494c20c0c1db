"""A virtualised conversation view: renders only the visible rows of any number of messages.

Longer than 400 lines: the row cache, the scroll anchor and the markers (read line, more
below, splices of moved lines) are one piece of state that every redraw path keeps
consistent; split, each part would need the others' internals.
"""

from __future__ import annotations

import re
import zlib
from bisect import bisect_right
from datetime import datetime, tzinfo

from rich.cells import cell_len, get_character_cell_size
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tchat.ui.chat_model import ChatLine

SENDER_COLOURS = 8
LINK = re.compile(r"\bhttps?://[!-~]{1,2000}")  # printable ASCII only, bounded
PREFIX = 8  # "HH:MM x " before the sender
# A line's rows depend on it and on: pending, failed, width, search, read marker, reason.
CacheKey = tuple[int, bool, bool, int, str, bool, str]


def sender_slot(name: str) -> int:
    """A stable colour slot per name (crc32: the same on every run and machine)."""
    return zlib.crc32(name.encode("utf-8", "replace")) % SENDER_COLOURS


def wrap_offsets(plain: str, width: int, indent: int = PREFIX) -> list[int]:
    """Where to break ``plain``: at the last space that fits, else mid-word.

    Rows after the first are indented by ``indent`` cells (they line up after the time).
    Heights are computed with the same function, so they are exact.
    """
    if plain.isascii():
        return _wrap_ascii(plain, width, indent)
    offsets: list[int] = []
    start = 0
    limit = max(1, width)
    end = len(plain)
    while True:
        col = 0
        index = start
        while index < end:
            size = get_character_cell_size(plain[index])
            if col + size > limit and index > start:
                break
            col += size
            index += 1
        if index >= end:
            return offsets
        space = plain.rfind(" ", start, index)
        cut = space + 1 if space >= start else index
        offsets.append(cut)
        start = cut
        limit = max(1, width - indent)


def _wrap_ascii(plain: str, width: int, indent: int) -> list[int]:
    """``wrap_offsets`` for one-cell characters, with str.rfind instead of a Python loop."""
    offsets: list[int] = []
    start = 0
    limit = max(1, width)
    end = len(plain)
    while end - start > limit:
        space = plain.rfind(" ", start, start + limit)
        cut = space + 1 if space >= start else start + limit
        offsets.append(cut)
        start = cut
        limit = max(1, width - indent)
    return offsets


def fold(text: Text, width: int, indent: int = PREFIX) -> list[Text]:
    """``text`` as rows of at most ``width`` cells, continuation rows indented."""
    plain = text.plain
    if width <= 0 or cell_len(plain) <= width:
        return [text]
    offsets = wrap_offsets(plain, width, indent)
    rows = list(text.divide(offsets))
    pad = " " * min(indent, max(0, width - 1))
    return [rows[0], *(Text(pad, end="") + row for row in rows[1:])]


def fold_lines(text: Text, width: int, indent: int = PREFIX) -> list[Text]:
    """``fold`` for text with line breaks: each later line starts a row, indented."""
    if "\n" not in text.plain:
        return fold(text, width, indent)
    rows: list[Text] = []
    pad = " " * indent
    for number, part in enumerate(text.split("\n", allow_blank=True)):
        rows.extend(fold(Text(pad, end="") + part if number else part, width, indent))
    return rows


def row_count(plain: str, width: int, indent: int = PREFIX) -> int:
    """How many rows ``fold_lines`` makes of a text whose plain form is ``plain``."""
    if "\n" not in plain:
        return 1 + (len(wrap_offsets(plain, width, indent)) if cell_len(plain) > width else 0)
    pad = " " * indent
    total = 0
    for number, part in enumerate(plain.split("\n")):
        row = pad + part if number else part
        total += 1 + (len(wrap_offsets(row, width, indent)) if cell_len(row) > width else 0)
    return total


class MessageView(ScrollView, can_focus=False):
    """Shows a list of ``ChatLine``s owned by the model; the screen says what changed.

    Never focused: the composer keeps the focus and scrolls this view (PgUp, PgDn...).
    """

    COMPONENT_CLASSES = {
        "message-view--time",
        "message-view--day",
        "message-view--notice",
        "message-view--pending",
        "message-view--failed",
        "message-view--refusal",
        "message-view--mention",
        "message-view--own",
        "message-view--match",
        "message-view--marker",
        "message-view--more",
        "message-view--link",
        *(f"message-view--sender-{i}" for i in range(SENDER_COLOURS)),
    }
    BINDINGS = [
        Binding("home", "scroll_home", "Top", show=False),
        Binding("end", "scroll_end", "Bottom", show=False),
    ]

    class NeedHistory(Message):
        """The user reached the top: load older messages."""

    def __init__(self, *, tz: tzinfo | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tz = tz
        self.me = ""
        self.highlight = ""
        self._lines: list[ChatLine] = []
        self._day: list[int] = []  # ordinal day of each line
        self._cells: list[int] = []  # cell width of each line's plain row
        self._starts: list[int] = []
        self._total = 0
        self._width = 0
        self._follow = True  # stay at the newest line until the user scrolls up
        self.read_mark: int | None = None  # a "new" rule is drawn below this line
        self.unseen = 0  # lines appended below while the user was scrolled up
        self._cache: LRUCache[CacheKey, list[Strip]] = LRUCache(512)

    # -- what the screen calls --------------------------------------------------------
    def show(self, lines: list[ChatLine], me: str, read_mark: int | None = None) -> None:
        """Display another conversation (the list is shared with the model, not copied)."""
        self._lines = lines
        self.me = me
        self.highlight = ""
        self.read_mark = read_mark
        self.unseen = 0
        self._cache.clear()
        self._day = [self._ordinal(line.ts) for line in lines]
        self._cells = [self._plain_cells(line) for line in lines]
        self._relayout()
        self._follow = True
        self.scroll_end(animate=False)

    def appended(self, count: int) -> None:
        for line in self._lines[len(self._cells) :]:
            self._day.append(self._ordinal(line.ts))
            self._cells.append(self._plain_cells(line))
        self._layout_from(len(self._starts))
        if self._follow:
            self.scroll_end(animate=False)  # after the refresh, when the new size is known
        else:
            self.unseen += count
        self.refresh()

    def prepended(self, count: int) -> None:
        """Older lines went in at the top: keep the rows on screen where they are."""
        before = self._total
        head = self._lines[:count]
        self._day[0:0] = [self._ordinal(line.ts) for line in head]
        self._cells[0:0] = [self._plain_cells(line) for line in head]
        if self.read_mark is not None:
            self.read_mark += count
        self._relayout()
        self.scroll_to(y=self.scroll_y + (self._total - before), animate=False, immediate=True)

    def changed(self) -> None:
        """Lines changed in place, keeping their heights (a theme, a timestamp)."""
        self._cache.clear()
        self.refresh()

    def spliced(self, start: int, added: int) -> None:
        """Lines from ``start`` on were inserted, moved, removed or changed their mark (a
        committed line went in above our pending ones, ours took its committed place, or
        was refused): lay them out again.

        Only rows from ``start`` move, so a reader scrolled up keeps what is on screen; one
        at the bottom stays there.
        """
        start = max(0, min(start, len(self._cells), len(self._lines)))
        del self._day[start:]
        del self._cells[start:]
        for line in self._lines[start:]:
            self._day.append(self._ordinal(line.ts))
            self._cells.append(self._plain_cells(line))
        if start < len(self._starts):
            self._total = self._starts[start]
            del self._starts[start:]
        self._cache.clear()
        self._layout_from(start)
        if self._follow:
            self.scroll_end(animate=False)
        else:
            self.unseen += added
        self.refresh()

    def search(self, needle: str, line: ChatLine | None = None) -> int:
        """Highlight ``needle`` and scroll to ``line`` (default: its last occurrence).

        Returns the number of lines that match.
        """
        self.highlight = needle
        self._cache.clear()
        lowered = needle.lower()
        hits = [i for i, item in enumerate(self._lines) if lowered and lowered in item.text.lower()]
        target = hits[-1] if hits else None
        if line is not None:
            target = next((i for i in hits if self._lines[i] is line), target)
        if target is not None:
            self.scroll_to(y=self._starts[target], animate=False, immediate=True)
            self._follow = False
        self.refresh()
        return len(hits)

    def clear_lines(self) -> None:
        """The model emptied the shared list: forget its layout."""
        self.show(self._lines, self.me)

    @property
    def row_count(self) -> int:
        return self._total

    # -- layout -----------------------------------------------------------------------
    def _ordinal(self, ts: float) -> int:
        return datetime.fromtimestamp(ts, self.tz).toordinal()

    def _plain_cells(self, line: ChatLine) -> int:
        if "\n" in line.text:
            return 1 << 30  # never the one-row fast path
        cells = PREFIX + cell_len(self._nick(line)) + cell_len(line.text)
        if line.pending or line.failed:  # the rare case: no call per line of a long history
            cells += cell_len(_state(line))
        return cells

    def _nick(self, line: ChatLine) -> str:
        if line.notice:
            return "-*- "
        return f"* {line.sender} " if line.action else f"<{line.sender}> "

    def _height(self, index: int, width: int) -> int:
        line = self._lines[index]
        sep = 1 if index == 0 or self._day[index] != self._day[index - 1] else 0
        sep += 1 if index == self.read_mark else 0
        cells = self._cells[index]
        if cells <= width:
            return sep + 1
        plain = " " * PREFIX + self._nick(line) + line.text + _state(line)
        return sep + row_count(plain, width)

    def _relayout(self) -> None:
        self._starts = []
        self._total = 0
        self._layout_from(0)

    def _layout_from(self, start: int) -> None:
        width = max(1, self._width or self.scrollable_content_region.width or 80)
        starts = self._starts
        total = self._total
        height = self._height
        for index in range(start, len(self._lines)):
            starts.append(total)
            total += height(index, width)
        self._total = total
        self.virtual_size = Size(width, total)

    def on_resize(self) -> None:
        width = self.scrollable_content_region.width
        if width != self._width:
            self._width = width
            self._cache.clear()
            self._relayout()
            if self._follow:
                self.scroll_end(animate=False)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._follow = new_value >= self.max_scroll_y
        if self._follow and self.unseen:
            self.unseen = 0
            self.refresh()
        if new_value <= 0 < old_value and self._lines:
            self.post_message(self.NeedHistory())

    def action_scroll_home(self) -> None:
        if self.scroll_y <= 0:
            self.post_message(self.NeedHistory())
        self.scroll_home(animate=False, immediate=True)

    def action_scroll_up(self) -> None:
        if self.scroll_y <= 0:
            self.post_message(self.NeedHistory())
        super().action_scroll_up()

    def action_page_up(self) -> None:
        if self.scroll_y <= 0:
            self.post_message(self.NeedHistory())
        super().action_page_up()

    def page(self, step: int) -> None:
        """PgUp/PgDn from the composer: a screenful, at once (an animation lags fast keys)."""
        if step < 0 and self.scroll_y <= 0:
            self.post_message(self.NeedHistory())
        height = max(1, self.scrollable_content_region.height - 1)
        self.scroll_to(y=self.scroll_y + step * height, animate=False, immediate=True)

    def action_scroll_end(self) -> None:
        self._follow = True
        self.unseen = 0
        self.scroll_end(animate=False, immediate=True)
        self.refresh()

    # -- rendering --------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        row = round(self.scroll_y) + y
        base = self.rich_style
        if self.unseen and y == self.scrollable_content_region.height - 1:
            return self._rule(f" -- more ({self.unseen} new, End) -- ", "more", width)
        if row >= self._total or not self._starts:
            return Strip.blank(width, base)
        index = bisect_right(self._starts, row) - 1
        strips = self._item_strips(index, width)
        sub = row - self._starts[index]
        strip = strips[sub] if sub < len(strips) else Strip.blank(width, base)
        return strip.crop_extend(0, width, base)

    def _item_strips(self, index: int, width: int) -> list[Strip]:
        line = self._lines[index]
        marked = index == self.read_mark
        key = (id(line), line.pending, line.failed, width, self.highlight, marked, line.reason)
        cached = self._cache.get(key)
        sep = index == 0 or self._day[index] != self._day[index - 1]
        if cached is not None and (len(cached) == self._height(index, width)):
            return cached
        console = self.app.console
        rows: list[Text] = []
        if sep:
            rows.append(self._day_row(line.ts, width))
        rows.extend(fold_lines(self._text(line), width))
        base = self.rich_style
        strips = [Strip(row.render(console), cell_len(row.plain)).apply_style(base) for row in rows]
        if marked:
            strips.append(self._rule(" new ", "marker", width))
        self._cache[key] = strips
        return strips

    def _rule(self, label: str, kind: str, width: int) -> Strip:
        style = self.get_component_rich_style(f"message-view--{kind}")
        row = Text(label.center(width, "─" if kind == "marker" else " "), style=style, end="")
        strip = Strip(row.render(self.app.console), cell_len(row.plain))
        return strip.apply_style(self.rich_style).crop_extend(0, width, self.rich_style)

    def _day_row(self, ts: float, width: int) -> Text:
        label = datetime.fromtimestamp(ts, self.tz).strftime(" %A %d %B %Y ")
        style = self.get_component_rich_style("message-view--day")
        return Text(label.center(width, "─"), style=style, end="")

    def _text(self, line: ChatLine) -> Text:
        style = self.get_component_rich_style
        stamp = datetime.fromtimestamp(line.ts, self.tz).strftime("%H:%M")
        mark = "…" if line.pending else "✗" if line.failed else " "
        text = Text(end="")
        text.append(stamp, style("message-view--time"))
        text.append(" ")
        unsettled = "pending" if line.pending else "refusal" if line.failed else ""
        text.append(mark, style(f"message-view--{unsettled}") if unsettled else Style())
        text.append(" ")
        if line.notice:
            text.append(self._nick(line), style("message-view--notice"))
            text.append(line.text, style("message-view--notice"))
            return text
        own = line.sender == self.me
        nick_style = style(f"message-view--sender-{sender_slot(line.sender)}")
        if own:
            nick_style = style("message-view--own")
        text.append(self._nick(line), nick_style)
        body_style = Style()
        if line.pending:
            body_style = style("message-view--pending")
        elif line.failed:
            body_style = style("message-view--failed")
        elif line.mention:
            body_style = style("message-view--mention")
        start = len(text)
        text.append(line.text, body_style)  # plain append: network text is never markup
        link_style = style("message-view--link")
        for match in LINK.finditer(line.text):
            # The URL is printable ASCII by the pattern: nothing in it can end the OSC 8 link.
            url = match.group().rstrip(".,;:!?)]}'\"")
            begin = start + match.start()
            text.stylize(link_style + Style(link=url), begin, begin + len(url))
        if self.highlight:
            text.highlight_words(
                [self.highlight], style("message-view--match"), case_sensitive=False
            )
        if unsettled:
            text.append(_state(line), style(f"message-view--{unsettled}"))
        return text


def _state(line: ChatLine) -> str:
    """What follows an own message not yet in the committed order (irssi-like, in words)."""
    if line.pending:
        return "  (sending)"
    if line.failed:
        because = f": {line.reason}" if line.reason else ""
        return f"  (not sent{because}; /resend or /dismiss)"
    return ""
