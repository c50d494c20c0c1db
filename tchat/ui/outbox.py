"""A conversation's outbox: our own messages not yet in the committed order, below it.

``Conversation.lines`` is the committed (delivery) order, which every member of a room
shares, then ``outbox`` lines: our messages not yet stored by the servers (pending) or
refused (failed), in the order they were typed. These functions keep that shape; the
chat model calls them and reports what moved to the view.
"""

from __future__ import annotations

from typing import Protocol, TypeVar


class Line(Protocol):
    failed: bool


L = TypeVar("L", bound=Line)


class Conversation(Protocol[L]):
    """tchat.ui.chat_model.Conversation, as far as its outbox goes (no import circle)."""

    lines: list[L]
    outbox: int


def last_committed(conv: Conversation[L]) -> L | None:
    """The newest line above the outbox (what the bell and the read marker look at)."""
    index = len(conv.lines) - conv.outbox - 1
    return conv.lines[index] if index >= 0 else None


def commit(conv: Conversation[L], line: L) -> int:
    """Put ``line`` at the end of the committed order, above the outbox: its index."""
    index = len(conv.lines) - conv.outbox
    conv.lines.insert(index, line)
    return index


def settle(conv: Conversation[L], line: L) -> int:
    """``line`` leaves the outbox for the end of the committed order: its new index,
    from which lines moved or changed (its mark is gone, its height may be)."""
    start = len(conv.lines) - conv.outbox
    for index in range(start, len(conv.lines)):
        if conv.lines[index] is line:
            del conv.lines[index]
            conv.lines.insert(start, line)
            conv.outbox -= 1
            break
    return start


def place(conv: Conversation[L], line: L) -> int | None:
    """An Acked own ``line``'s committed copy came: move it to the committed order's end.

    Returns the first index that moved, or None when it was there already (the usual case:
    its Ack and its copy came together).
    """
    end = len(conv.lines) - conv.outbox - 1
    for index in range(end, -1, -1):
        if conv.lines[index] is line:
            if index == end:
                return None
            del conv.lines[index]
            conv.lines.insert(end, line)
            return index
    return None  # cleared meanwhile: nothing to move


def take_failed(conv: Conversation[L]) -> tuple[list[L], int]:
    """Remove the refused lines, oldest first, and the index the outbox starts at."""
    start = len(conv.lines) - conv.outbox
    failed = [line for line in conv.lines[start:] if line.failed]
    if failed:
        conv.lines[start:] = [line for line in conv.lines[start:] if not line.failed]
        conv.outbox -= len(failed)
    return failed, start
