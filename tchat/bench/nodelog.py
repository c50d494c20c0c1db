"""Reads the node events (``[kind] text``) that daemons log at INFO, with their wall-clock time."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

# "12:34:56.789 INFO    tchat.node: [election-started] server 2 starts election round 3 (...)"
_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) \S+\s+tchat\.node: \[([a-z-]+)\] (.*)$")


@dataclass(frozen=True, slots=True)
class NodeEvent:
    at: float  # seconds since local midnight, millisecond resolution
    kind: str
    text: str
    server: int


def day_seconds(wall: float) -> float:
    """A time.time() value as seconds since local midnight, the clock the logs print."""
    t = time.localtime(wall)
    return t.tm_hour * 3600 + t.tm_min * 60 + t.tm_sec + (wall % 1.0)


def read_events(path: Path, server: int, offset: int = 0) -> tuple[list[NodeEvent], int]:
    """Events in ``path`` from byte ``offset`` on; returns them and the new offset."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    events = []
    for raw in data.decode("utf-8", "replace").splitlines():
        m = _LINE.match(raw)
        if m:
            h, mi, s, ms, kind, text = m.groups()
            at = int(h) * 3600 + int(mi) * 60 + int(s) + int(ms) / 1000
            events.append(NodeEvent(at, kind, text, server))
    return events, offset + len(data)


def since(at: float, start: float) -> float:
    """``at - start`` on the day clock, across one midnight."""
    d = at - start
    return d + 86400 if d < -43200 else d
