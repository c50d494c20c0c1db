"""Happened-before between chat entries, as the Clocks tab shows it."""

from __future__ import annotations

from tchat.core.messages import Chat, Entry
from tchat.core.vclock import VectorClock


def happened_before(a: Entry, b: Entry) -> bool:
    """True when ``b``'s sender had delivered ``a`` when it sent ``b``."""
    body = b.body
    clock = body.sender_clock if isinstance(body, Chat) else b.clock
    return clock.get(a.dot.server) >= a.dot.counter and a.dot != b.dot


def causal_relation(a: Entry, b: Entry) -> str:
    """ "->" (a before b), "<-" (b before a) or "||" (concurrent)."""
    if happened_before(a, b):
        return "->"
    if happened_before(b, a):
        return "<-"
    return "||"


def clock_text(clock: VectorClock) -> str:
    return "{" + ", ".join(f"{k}:{v}" for k, v in clock.items()) + "}"
