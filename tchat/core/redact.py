"""Log-safe descriptions of messages, entries and effects: their shape, never what users wrote."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from tchat.core.vclock import VectorClock

# Fields whose value is never logged, only its size: what users wrote (chat text) and
# what works as a credential today (a client ID lets its holder speak as its user).
# A password hash is redacted too: with it, guessing runs offline at the attacker's pace.
REDACTED_FIELDS = frozenset(
    {"text", "client_id", "password", "phc", "secret", "key", "topic", "away_reason"}
)
MAX_ITEMS_SHOWN = 4  # of a tuple; the rest is counted
MAX_DEPTH = 6  # a message is a few levels deep; deeper is cut, never recursed without end


def redacted(value: Any) -> str:
    """``repr``-like text of ``value`` that shows types, names, numbers and sizes but never
    user text or credentials (issue 15: no log level prints message text)."""
    return _describe(value, "", 0)


def _describe(value: Any, field: str, depth: int) -> str:
    if field in REDACTED_FIELDS and value is not None:
        return f"<{_size(value)}>"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"  # ciphertext, MACs, keys: their size is enough
    if depth >= MAX_DEPTH:
        return f"{type(value).__name__}(...)"
    names = _field_names(type(value))
    if names is not None:
        parts = (f"{name}={_describe(getattr(value, name), name, depth + 1)}" for name in names)
        return f"{type(value).__name__}({', '.join(parts)})"
    if isinstance(value, tuple | list):
        shown = [_describe(item, field, depth + 1) for item in value[:MAX_ITEMS_SHOWN]]
        if len(value) > MAX_ITEMS_SHOWN:
            shown.append(f"... {len(value) - MAX_ITEMS_SHOWN} more")
        return f"({', '.join(shown)})"
    if isinstance(value, str):
        # Names, rooms, addresses: checked and short (the schema bounds them); cut anyway.
        return repr(value if len(value) <= 64 else value[:64] + "...")
    if value is None or isinstance(value, bool | int | float | enum.Enum):
        return repr(value)
    if isinstance(value, VectorClock):  # server IDs and counters: safe, but may be long
        return repr(value) if len(value) <= MAX_ITEMS_SHOWN * 2 else f"<clock of {len(value)}>"
    return f"<{type(value).__name__}>"  # anything else: its type, never its repr


# Field names per dataclass type (dataclasses.fields() was three quarters of the cost);
# bounded by the program's dataclass types.
_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    try:
        return _FIELDS[cls]
    except KeyError:
        pass
    names = (
        tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
    )
    _FIELDS[cls] = names
    return names


def _size(value: Any) -> str:
    if isinstance(value, str):
        return f"{len(value)} chars"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"{len(value)} bytes"
    return type(value).__name__
