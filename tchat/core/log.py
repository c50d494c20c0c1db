"""The replicated log: a grow-only set of entries kept in a deterministic causal order."""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator

from tchat.core.messages import Chat, Dot, Entry, Origin
from tchat.core.vclock import EMPTY_CLOCK, VectorClock


class ReplicatedLog:
    """Entries sorted by ``Entry.key`` (clock sum, then dot): a linear extension of
    happened-before that every replica computes identically from the same set.

    The log is kept causally closed: an entry is only ever added after everything its
    clock covers (senders ship entries in key order), so ``clock`` — the merge of every
    entry's clock — says exactly which entries this replica holds.
    """

    def __init__(self) -> None:
        self._keys: list[tuple[int, int, int]] = []
        self._entries: list[Entry] = []
        self._by_dot: dict[Dot, Entry] = {}
        self._by_origin: dict[Origin, Entry] = {}
        self._copies = False  # some operation is recorded twice (only ever after a merge)
        # per sequencing server, the sorted counters it holds (to find where a clock ends)
        self._counters: dict[int, list[int]] = {}
        # The chat entries alone, in log order: a login's catch-up looks only at these.
        self._chat_keys: list[tuple[int, int, int]] = []
        self._chats: list[Entry] = []
        self.clock: VectorClock = EMPTY_CLOCK

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, dot: object) -> bool:
        return dot in self._by_dot

    def get(self, dot: Dot) -> Entry | None:
        return self._by_dot.get(dot)

    def by_origin(self, origin: Origin) -> Entry | None:
        return self._by_origin.get(origin)

    def is_duplicate(self, entry: Entry) -> bool:
        """A later copy of an operation some other entry already records."""
        if not self._copies:  # the common case, asked for every entry committed
            return False
        return entry.origin is not None and self._by_origin.get(entry.origin) is not entry

    def entries(self) -> list[Entry]:
        return self._entries

    def last(self) -> Entry | None:
        return self._entries[-1] if self._entries else None

    def next_counter(self, server_id: int) -> int:
        counters = self._counters.get(server_id)
        return (counters[-1] + 1) if counters else 1

    def add(self, entry: Entry) -> bool | None:
        """Add ``entry``. Returns None if it was already here, True if it went to the
        tail (the common case), False if it was inserted in the middle (a merge)."""
        if entry.dot in self._by_dot:
            return None
        key = entry.key
        at_tail = not self._keys or key > self._keys[-1]
        if at_tail:
            self._keys.append(key)
            self._entries.append(entry)
        else:
            index = bisect_right(self._keys, key)
            self._keys.insert(index, key)
            self._entries.insert(index, entry)
        self._by_dot[entry.dot] = entry
        if isinstance(entry.body, Chat):
            index = bisect_right(self._chat_keys, key)
            self._chat_keys.insert(index, key)
            self._chats.insert(index, entry)
        if entry.origin is not None:
            # Two partitions may each have sequenced the same resent operation; the copy
            # first in log order is the one that counts, everywhere.
            known = self._by_origin.get(entry.origin)
            if known is None or key < known.key:
                self._by_origin[entry.origin] = entry
            if known is not None:
                self._copies = True
        counters = self._counters.setdefault(entry.dot.server, [])
        if not counters or entry.dot.counter > counters[-1]:
            counters.append(entry.dot.counter)
        else:
            insort(counters, entry.dot.counter)
        self.clock = self.clock.merge(entry.clock)
        return at_tail

    def missing_for(self, clock: VectorClock) -> Iterator[Entry]:
        """Entries not covered by ``clock``, in log order: what a replica at ``clock`` lacks."""
        for entry in self._entries[self._first_missing(clock) :]:
            if not entry.clock <= clock:
                yield entry

    def chats_missing_for(self, clock: VectorClock) -> Iterator[Entry]:
        """The chat entries of ``missing_for(clock)``, without walking the others."""
        start = self._first_missing(clock)
        if start >= len(self._keys):
            return
        for entry in self._chats[bisect_left(self._chat_keys, self._keys[start]) :]:
            if not entry.clock <= clock:
                yield entry

    def _first_missing(self, clock: VectorClock) -> int:
        """Index of the first entry ``clock`` may not cover (everything before it is)."""
        start = len(self._entries)
        for server, have in self.clock.items():
            if have <= clock.get(server):
                continue
            counters = self._counters.get(server, [])
            index = bisect_right(counters, clock.get(server))
            if index < len(counters):
                entry = self._by_dot[Dot(server, counters[index])]
                start = min(start, bisect_right(self._keys, entry.key) - 1)
        return start

    def chats_before(self, before: Dot | None, limit: int, want: object) -> list[Entry]:
        """Up to ``limit`` chat entries before ``before`` (newest last) for which
        ``want(entry)`` is true: scrollback."""
        end = len(self._entries)
        if before is not None and before in self._by_dot:
            end = bisect_right(self._keys, self._by_dot[before].key) - 1
        found: list[Entry] = []
        for index in range(end - 1, -1, -1):
            entry = self._entries[index]
            if isinstance(entry.body, Chat) and want(entry):  # type: ignore[operator]
                found.append(entry)
                if len(found) >= limit:
                    break
        found.reverse()
        return found
