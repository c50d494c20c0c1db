"""The message composer: an Input with line history (up/down) and Tab completion."""

from __future__ import annotations

from collections.abc import Callable

from textual.binding import Binding
from textual.widgets import Input

from tchat.ui.commands import common_prefix

Completer = Callable[[str, int], list[str]]
HISTORY_MAX = 500


class Composer(Input):
    """Posts ``Input.Submitted``; the screen decides what a line means."""

    BINDINGS = [
        Binding("up", "history(-1)", "Previous", show=False),
        Binding("down", "history(1)", "Next", show=False),
        Binding("tab", "complete", "Complete", show=False),
    ]

    def __init__(self, completer: Completer | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.completer = completer
        self.history: list[str] = []
        self._history_pos = 0
        self._draft = ""
        self._cycle: list[str] = []
        self._cycle_index = 0
        self._cycle_span: tuple[int, int] = (0, 0)
        self.last_candidates: list[str] = []

    def remember(self, line: str) -> None:
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
            del self.history[:-HISTORY_MAX]
        self._history_pos = len(self.history)
        self._draft = ""

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        if self._history_pos == len(self.history):
            self._draft = self.value
        pos = max(0, min(len(self.history), self._history_pos + step))
        self._history_pos = pos
        self.value = self.history[pos] if pos < len(self.history) else self._draft
        self.cursor_position = len(self.value)

    def action_complete(self) -> None:
        """Complete the word before the cursor; repeated Tab cycles through candidates."""
        if self.completer is None:
            return
        value, cursor = self.value, self.cursor_position
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
        start = value.rfind(" ", 0, cursor) + 1
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
