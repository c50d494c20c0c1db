"""/search across every conversation: the matches, and which one is shown (no Textual)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tchat.ui.chat_model import ChatLine, ChatModel

MAX_HITS = 10_000  # beyond this the search says so instead of holding more


@dataclass(slots=True)
class SearchResults:
    needle: str
    hits: list[tuple[str, ChatLine]] = field(default_factory=list)  # (conversation key, line)
    index: int = -1
    truncated: bool = False

    @classmethod
    def find(cls, model: ChatModel, needle: str) -> SearchResults:
        """Every message line with ``needle`` (any case), conversations in window order.

        Starts at the newest match of the active conversation, else the newest of all.
        """
        found = cls(needle)
        lowered = needle.lower()
        for conv in model.ordered():
            for line in conv.lines:
                if not line.notice and lowered in line.text.lower():
                    if len(found.hits) >= MAX_HITS:
                        found.truncated = True
                        break
                    found.hits.append((conv.key, line))
        mine = [i for i, (key, _line) in enumerate(found.hits) if key == model.active]
        found.index = mine[-1] if mine else len(found.hits) - 1
        return found

    def current(self) -> tuple[str, ChatLine] | None:
        return self.hits[self.index] if 0 <= self.index < len(self.hits) else None

    def step(self, delta: int) -> tuple[str, ChatLine] | None:
        if not self.hits:
            return None
        self.index = (self.index + delta) % len(self.hits)
        return self.current()

    def label(self) -> str:
        if not self.hits:
            return f"search {self.needle!r}: no match (Esc clears)"
        places = len({key for key, _line in self.hits})
        more = "+" if self.truncated else ""
        return (
            f"search {self.needle!r}: {self.index + 1}/{len(self.hits)}{more} in {places} "
            f"conversation{'s' if places != 1 else ''} (Alt+N/Alt+P, Esc clears)"
        )
