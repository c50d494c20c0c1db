"""Where a replica's whole log lives: the narrow interface the log reads old entries through,
and the in-memory archive of the simulator and the core tests."""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Protocol

from tchat.core.messages import Chat, Dot, Entry, Origin

Key = tuple[int, int, int]  # Entry.key: (clock sum, dot server, dot counter)


class LogArchive(Protocol):
    """Every entry a replica holds, read by key order, dot or origin.

    The log keeps only a hot window of recent entries in memory and asks the archive for
    the rest (catch-up, replay, scrollback, deduplication of old resends, re-folding). The
    runtime's archive is the SQLite store; the simulator's is ``InMemoryArchive``. Reads
    are synchronous: the core is sans-IO, so an archive answers from memory or from a
    local database it can read without waiting on anything else.
    """

    def append(self, entry: Entry) -> None:
        """Hold ``entry`` from now on (the log calls this once per entry it adds). The
        archive answers for it at once, durable or not yet."""

    def get(self, dot: Dot) -> Entry | None:
        """The entry with this dot, or None."""

    def by_origin(self, origin: Origin) -> Entry | None:
        """The first entry in key order recording this client operation, or None."""

    def entries_from(self, key: Key | None, limit: int, chats: bool = False) -> list[Entry]:
        """Up to ``limit`` entries whose key is ``>= key`` (None: from the first), in key
        order; only chat entries if ``chats``."""

    def chats_before(self, key: Key | None, limit: int) -> list[Entry]:
        """Up to ``limit`` chat entries whose key is ``< key`` (None: from the last),
        newest first."""

    def __len__(self) -> int:
        """How many entries it holds."""


class InMemoryArchive:
    """A LogArchive in lists: the whole log in memory, as the simulator and tests want it.

    Paired with a small hot window (``ReplicatedLog(hot=...)``) it makes every cold read
    path run in the simulator, with the same answers as the runtime's SQLite archive.
    """

    def __init__(self) -> None:
        self._keys: list[Key] = []
        self._entries: list[Entry] = []
        self._chat_keys: list[Key] = []
        self._chats: list[Entry] = []
        self._by_dot: dict[Dot, Entry] = {}
        self._by_origin: dict[Origin, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, entry: Entry) -> None:
        if entry.dot in self._by_dot:
            return
        key = entry.key
        if not self._keys or key > self._keys[-1]:
            self._keys.append(key)
            self._entries.append(entry)
        else:
            index = bisect_left(self._keys, key)
            self._keys.insert(index, key)
            self._entries.insert(index, entry)
        if isinstance(entry.body, Chat):
            index = bisect_left(self._chat_keys, key)
            self._chat_keys.insert(index, key)
            self._chats.insert(index, entry)
        self._by_dot[entry.dot] = entry
        if entry.origin is not None:
            known = self._by_origin.get(entry.origin)
            if known is None or key < known.key:
                self._by_origin[entry.origin] = entry

    def get(self, dot: Dot) -> Entry | None:
        return self._by_dot.get(dot)

    def by_origin(self, origin: Origin) -> Entry | None:
        return self._by_origin.get(origin)

    def entries_from(self, key: Key | None, limit: int, chats: bool = False) -> list[Entry]:
        keys, entries = (self._chat_keys, self._chats) if chats else (self._keys, self._entries)
        start = 0 if key is None else bisect_left(keys, key)
        return entries[start : start + limit]

    def chats_before(self, key: Key | None, limit: int) -> list[Entry]:
        end = len(self._chats) if key is None else bisect_left(self._chat_keys, key)
        found = self._chats[max(0, end - limit) : end]
        found.reverse()
        return found


class CounterRanges:
    """The counters one sequencing server's entries hold, as sorted ``[first, last]`` runs:
    a leader's counters are contiguous, so this is one or a few pairs, not one int each."""

    __slots__ = ("_firsts", "_lasts")

    def __init__(self) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []

    def __contains__(self, counter: int) -> bool:
        index = bisect_left(self._lasts, counter)
        return index < len(self._lasts) and self._firsts[index] <= counter

    def last(self) -> int:
        return self._lasts[-1] if self._lasts else 0

    def runs(self) -> list[tuple[int, int]]:
        return list(zip(self._firsts, self._lasts, strict=True))

    def add(self, counter: int) -> None:
        """Add a counter not held yet."""
        lasts = self._lasts
        if lasts and counter == lasts[-1] + 1:  # the common case: the next one
            lasts[-1] = counter
            return
        index = bisect_left(lasts, counter)
        firsts = self._firsts
        joins_before = index > 0 and lasts[index - 1] == counter - 1
        joins_after = index < len(firsts) and firsts[index] == counter + 1
        if joins_before and joins_after:
            lasts[index - 1] = lasts[index]
            del firsts[index], lasts[index]
        elif joins_before:
            lasts[index - 1] = counter
        elif joins_after:
            firsts[index] = counter
        else:
            insort(firsts, counter)
            lasts.insert(index, counter)

    def first_above(self, counter: int) -> int | None:
        """The smallest held counter greater than ``counter``, or None."""
        index = bisect_left(self._lasts, counter + 1)
        if index >= len(self._lasts):
            return None
        return max(self._firsts[index], counter + 1)
