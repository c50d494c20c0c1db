"""The message composer: a multi-line TextArea with line history, Tab completion and scrolling.

Keys are acted on in the order they were typed. Textual runs a widget's bindings only once the
key has bubbled up to the App, through one message queue per ancestor, while the widget inserts
printable keys at once; so a fast ``one⏎two⏎`` used to submit ``onetwo`` twice. Here every key
this widget binds is carried out in its own ``_on_key``, in turn with the characters around it,
and what it asks of the screen is posted straight to the screen's queue, ahead of later keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea

from tchat.ui.commands import common_prefix

Completer = Callable[[str, int], list[str]]
Checker = Callable[[str], str | None]  # why a line cannot be sent (and says so), or None
HISTORY_MAX = 500
MAX_DRAFT = 100_000  # characters the composer holds; a bigger paste is refused whole


class Composer(TextArea):
    """Posts ``Composer.Submitted`` and ``Composer.Navigate``; the screen decides what they mean."""

    BINDINGS = [
        Binding("enter", "submit", "Send", show=False),
        # Alt+Enter needs tchat.ui.terminal_keys in xterm and tmux; Ctrl+J ("\n") works on
        # every terminal; Shift+Enter only where the terminal reports it (kitty protocol).
        Binding("alt+enter,ctrl+j,shift+enter", "newline", "Newline", key_display="Alt+⏎"),
        Binding("up", "history(-1)", "Previous", show=False),
        Binding("down", "history(1)", "Next", show=False),
        Binding("tab", "complete", "Complete", show=False),
        Binding("pageup", "navigate('page_up')", "Scroll up", show=False),
        Binding("pagedown", "navigate('page_down')", "Scroll down", show=False),
        Binding("home", "edge('home')", "Top", show=False),
        Binding("end", "edge('end')", "Bottom", show=False),
        Binding("ctrl+home", "navigate('home')", "Top", show=False),
        Binding("ctrl+end", "navigate('end')", "Bottom", show=False),
        Binding("alt+a", "navigate('activity')", "Next active", key_display="Alt+A"),
        Binding("alt+n", "navigate('match', 1)", "Next match", show=False),
        Binding("alt+p", "navigate('match', -1)", "Previous match", show=False),
        *(
            Binding(f"alt+{n}", f"navigate('window', {n})", f"Chat {n}", show=False)
            for n in range(1, 10)
        ),
    ]

    @dataclass
    class Submitted(Message):
        """Enter: ``value`` is exactly what the composer held when Enter was pressed."""

        composer: Composer
        value: str

        @property
        def control(self) -> Composer:
            return self.composer

    @dataclass
    class Navigate(Message):
        """A key for the conversation rather than the text: scroll, or switch conversation."""

        composer: Composer
        action: str  # page_up, page_down, home, end, activity, window, match
        number: int = 0

        @property
        def control(self) -> Composer:
            return self.composer

    def __init__(
        self,
        completer: Completer | None = None,
        checker: Checker | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(soft_wrap=True, tab_behavior="focus", **kwargs)  # type: ignore[arg-type]
        self.completer = completer
        self.checker = checker
        self.sent: list[str] = []
        self._history_pos = 0
        self._draft = ""
        self._cycle: list[str] = []
        self._cycle_index = 0
        self._cycle_span: tuple[int, int] = (0, 0)
        self.last_candidates: list[str] = []

    # -- an Input-like face: the screen and tests think in one string and one offset ----
    @property
    def value(self) -> str:
        return self.text

    @value.setter
    def value(self, text: str) -> None:
        self.load_text(text)
        self.cursor_position = len(text)

    @property
    def cursor_position(self) -> int:
        row, column = self.cursor_location
        lines = self.document.lines
        return sum(len(line) + 1 for line in lines[:row]) + column

    @cursor_position.setter
    def cursor_position(self, index: int) -> None:
        index = max(0, min(len(self.text), index))
        text = self.text[:index]
        self.move_cursor((text.count("\n"), index - (text.rfind("\n") + 1)))

    # -- keys, in order -----------------------------------------------------------------
    async def _on_key(self, event: events.Key) -> None:
        bindings = self._bindings.key_to_bindings.get(event.key, ())
        if bindings and not self.read_only:
            # Ours and TextArea's (Left, Backspace...) alike: all in turn with the typing.
            event.stop()
            event.prevent_default()
            self._restart_blink()
            await self.run_action(bindings[0].action)
            return
        await super()._on_key(event)

    async def paste(self, text: str) -> None:
        """Paste ``text`` as if the terminal had pasted it here (a paste the screen caught
        while the composer lacked focus)."""
        await self._on_paste(events.Paste(text))

    async def _on_paste(self, event: events.Paste) -> None:
        """A paste keeps its lines (terminals send CR or CRLF between them)."""
        event.stop()
        event.prevent_default()
        text = event.text.replace("\r\n", "\n").replace("\r", "\n")
        if len(self.text) + len(text) > MAX_DRAFT:
            self.app.bell()
            self.notify(f"paste refused: over {MAX_DRAFT:,} characters", severity="warning")
            return
        start, end = self.selection
        result = self.replace(text, start, end)
        self.move_cursor(result.end_location)

    def _up(self, message: Message) -> None:
        # Straight to the screen: bubbling would queue it behind keys typed after this one.
        try:
            self.screen.post_message(message)
        except Exception:  # not mounted on a screen (tests of the widget alone)
            self.post_message(message)

    def action_submit(self) -> None:
        value = self.text
        if not value.strip():
            return
        problem = self.checker(value) if self.checker is not None else None
        if problem is not None:
            self.app.bell()
            return  # the checker said why; the text stays, to be cut down by hand
        self.remember(value)
        self.load_text("")
        self._up(self.Submitted(self, value))

    def action_newline(self) -> None:
        start, end = self.selection
        result = self.replace("\n", start, end)
        self.move_cursor(result.end_location)

    def action_navigate(self, action: str, number: int = 0) -> None:
        self._up(self.Navigate(self, action, number))

    def action_edge(self, where: str) -> None:
        """Home/End move the cursor; pressed again at the line's edge they scroll the chat."""
        row, column = self.cursor_location
        line = self.document[row]
        if where == "home" and column > 0:
            self.move_cursor((row, 0))
        elif where == "end" and column < len(line):
            self.move_cursor((row, len(line)))
        else:
            self._up(self.Navigate(self, where))

    # -- history --------------------------------------------------------------------------
    def remember(self, line: str) -> None:
        if line and (not self.sent or self.sent[-1] != line):
            self.sent.append(line)
            del self.sent[:-HISTORY_MAX]
        self._history_pos = len(self.sent)
        self._draft = ""

    def action_history(self, step: int) -> None:
        """Up/Down move between lines of a multi-line draft, and past its edge through history."""
        row, _column = self.cursor_location
        last = self.document.line_count - 1
        if (step < 0 and row > 0) or (step > 0 and row < last):
            self.action_cursor_up() if step < 0 else self.action_cursor_down()
            return
        if not self.sent:
            return
        if self._history_pos == len(self.sent):
            self._draft = self.value
        pos = max(0, min(len(self.sent), self._history_pos + step))
        self._history_pos = pos
        self.value = self.sent[pos] if pos < len(self.sent) else self._draft

    # -- completion -----------------------------------------------------------------------
    def action_complete(self) -> None:
        """Complete the word before the cursor; repeated Tab cycles through candidates.

        With no word before the cursor Tab moves the focus on, as everywhere else: cycling
        the focus through the composer must not fill it with nicks.
        """
        value, cursor = self.value, self.cursor_position
        word_start = max(value.rfind(" ", 0, cursor), value.rfind("\n", 0, cursor)) + 1
        if self.completer is None or word_start == cursor:
            self.screen.focus_next()
            return
        start, end = self._cycle_span
        if self._cycle and value[start:end] in self._cycle and cursor == end:
            self._cycle_index = (self._cycle_index + 1) % len(self._cycle)
            self._replace(start, end, self._cycle[self._cycle_index])
            return
        self._cycle = []
        candidates = self.completer(value, cursor)
        self.last_candidates = candidates
        if not candidates:
            self.app.bell()
            return
        start = word_start
        if len(candidates) == 1:
            word = candidates[0]
            nick_at_start = start == 0 and not word.startswith(("/", "#", "@"))
            self._replace(start, cursor, word + (": " if nick_at_start else " "))
            return
        prefix = common_prefix(candidates)
        if len(prefix) > cursor - start:
            self._replace(start, cursor, prefix)
            return
        self._cycle = candidates
        self._cycle_index = 0
        self._replace(start, cursor, candidates[0])

    def _replace(self, start: int, end: int, word: str) -> None:
        value = self.value
        self.value = value[:start] + word + value[end:]
        self.cursor_position = start + len(word)
        self._cycle_span = (start, start + len(word))
