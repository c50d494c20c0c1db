"""Validation of user and room names: short, printable, no spaces, no control characters."""

from __future__ import annotations

import unicodedata

from tchat.core.messages import MAX_NAME, MAX_ROOM, MAX_TEXT

# Cc control, Cf format (bidi overrides, zero-width joiners...), Zl/Zp separators,
# Cs surrogates, Co private use, Cn unassigned.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Zs", "Cs", "Co", "Cn"})


def name_problem(name: str, *, what: str = "name", limit: int = MAX_NAME) -> str | None:
    """Why ``name`` is not acceptable as a user or room name, or None when it is."""
    if not name:
        return f"{what} is empty"
    if len(name) > limit:
        return f"{what} is longer than {limit} characters"
    for char in name:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return f"{what} contains a space, control or format character (U+{ord(char):04X})"
    return None


def room_problem(room: str) -> str | None:
    return name_problem(room, what="room name", limit=MAX_ROOM)


def text_problem(text: str) -> str | None:
    if len(text) > MAX_TEXT:
        return f"message is longer than {MAX_TEXT} characters"
    if not text.strip():
        return "message is empty"
    return None
