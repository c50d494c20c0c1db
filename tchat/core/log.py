"""The replicated log: a grow-only set of entries kept in a deterministic causal order,
recent ones in memory, all of them in a LogArchive."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator

from tchat.core.archive import CounterRanges, InMemoryArchive, Key, LogArchive
from tchat.core.messages import Chat, Dot, Entry, Origin
from tchat.core.vclock import EMPTY_CLOCK, VectorClock

HOT_ENTRIES = 20_000  # entries kept in memory by default: the tail of the log
ARCHIVE_PAGE = 256  # entries read from the archive at a time
# Chat entries one scrollback request may read from the archive looking for matches: the
# work a request costs is bounded, however rare its room or conversation is in the log.
HISTORY_SCAN = 20_000


class ReplicatedLog:
    """Entries sorted by ``Entry.key`` (clock sum, then dot): a linear extension of
    happened-before that every replica computes identically from the same set.

    The log is kept causally closed: an entry is only ever added after everything its
    clock covers (senders ship entries in key order), so ``clock`` — the merge of every
    entry's clock — says exactly which entries this replica holds.

    Memory is bounded: the clock, each server's counters as runs, each client's highest
    operation number, and a hot window of the last ``hot`` entries in key order. Every
    entry also goes to the ``archive``, which answers for the older ones.
    """

    def __init__(self, archive: LogArchive | None = None, hot: int = HOT_ENTRIES) -> None:
        self.archive: LogArchive = archive if archive is not None else InMemoryArchive()
        self.hot = max(1, hot)
        self._count = 0
        # The hot window: every entry whose key is >= _floor (None: every entry), in order.
        self._floor: Key | None = None
        self._keys: list[Key] = []
        self._entries: list[Entry] = []
        self._by_dot: dict[Dot, Entry] = {}
        self._chat_keys: list[Key] = []  # the window's chat entries: catch-up reads these
        self._chats: list[Entry] = []
        self._hot_origin: dict[Origin, Entry] = {}  # first in key order within the window
        # Operations recorded twice (only ever after a merge: two partitions each sequenced
        # a resend) -> the key and dot of the copy that counts, the first in key order. A
        # re-fold asks is_duplicate of every entry it folds: answered here, it reads nothing
        # from the archive (it was one SQLite query per entry of such an operation). One
        # small tuple per operation recorded twice, never dropped: bounded by the log's
        # copies as the log is by its entries. Empty in a log that never merged copies.
        self._first_copy: dict[Origin, tuple[Key, Dot]] = {}
        # client ID -> its highest operation number in the log: a new operation (the
        # common case) is known not to be here without asking the archive.
        self._high: dict[str, int] = {}
        # client ID -> its highest operation number below the window: an older operation
        # that is above it and not in the window (a resend of one deferred or refused, an
        # operation the other side sequenced first) is known to be absent without asking the
        # archive. One int per client, as ``_high``.
        self._cold_high: dict[str, int] = {}
        self._counters: dict[int, CounterRanges] = {}  # per sequencing server
        self.clock: VectorClock = EMPTY_CLOCK
        # Told of the entries leaving the window, in key order (the node folds them into
        # its state as of the window's floor, so a merge re-folds from there).
        self.on_evict: Callable[[list[Entry]], None] | None = None
        # The lowest key that landed below the window since the node last looked (None:
        # none did): what was folded below the floor is not the fold of the entries there.
        self.cold_from: Key | None = None

    def __len__(self) -> int:
        return self._count

    def __contains__(self, dot: object) -> bool:
        if not isinstance(dot, Dot):
            return False
        counters = self._counters.get(dot.server)
        return counters is not None and dot.counter in counters

    @property
    def hot_size(self) -> int:
        """Entries held in memory."""
        return len(self._entries)

    @property
    def floor(self) -> Key | None:
        """Key of the window's first entry once some have left it (None: all are in it)."""
        return self._floor

    def window(self) -> list[Entry]:
        """The hot window's entries, in order (a copy)."""
        return list(self._entries)

    def get(self, dot: Dot) -> Entry | None:
        entry = self._by_dot.get(dot)
        if entry is None and dot in self:
            entry = self.archive.get(dot)
        return entry

    def by_origin(self, origin: Origin) -> Entry | None:
        """The entry that counts for this client operation (the first copy in key order)."""
        if origin.cmid > self._high.get(origin.client_id, 0):
            return None
        first = self._first_copy.get(origin)
        if first is not None:
            return self.get(first[1])  # from the window, or one read by dot
        entry = self._hot_origin.get(origin)  # the only copy, if it is in the window
        if entry is not None:
            return entry
        if origin.cmid > self._cold_high.get(origin.client_id, 0):
            return None
        return self.archive.by_origin(origin)

    def is_duplicate(self, entry: Entry) -> bool:
        """A later copy of an operation some other entry already records."""
        if not self._first_copy or entry.origin is None:
            return False  # the common case, asked for every entry committed
        first = self._first_copy.get(entry.origin)
        return first is not None and first[1] != entry.dot

    def entries(self) -> list[Entry]:
        """Every entry, in order, as a list: for tests and the simulator (a server's log
        does not fit in memory; it walks ``iter_entries``)."""
        return list(self.iter_entries())

    def iter_entries(self) -> Iterator[Entry]:
        return self._walk(None, chats=False)

    def below_floor(self, start: Key | None = None) -> Iterator[Entry]:
        """The entries older than the window (from key ``start`` on), in order, from the
        archive."""
        if self._floor is None:
            return iter(())
        return self._walk_archive(start, self._floor, chats=False)

    def last(self) -> Entry | None:
        return self._entries[-1] if self._entries else None

    def next_counter(self, server_id: int) -> int:
        counters = self._counters.get(server_id)
        return (counters.last() + 1) if counters else 1

    def add(self, entry: Entry) -> bool | None:
        """Add ``entry``. Returns None if it was already here, True if it went to the
        tail (the common case), False if it was inserted in the middle (a merge)."""
        if entry.dot in self:
            return None
        origin = entry.origin
        if origin is not None:
            if origin.cmid <= self._high.get(origin.client_id, 0):
                self._note_copy(origin, entry)
            else:
                self._high[origin.client_id] = origin.cmid
        self._account(entry)
        self.archive.append(entry)
        return self._keep(entry)

    def restore(self) -> Iterator[Entry]:
        """Rebuild the indexes from an archive that already holds a log (a restart), and
        yield its entries in order for the caller to fold."""
        for entry in self._walk_archive(None, None, chats=False):
            origin = entry.origin
            if origin is not None:
                if origin.cmid > self._high.get(origin.client_id, 0):
                    self._high[origin.client_id] = origin.cmid
                elif origin not in self._first_copy:
                    # In key order the first copy comes first: a later one only needs to
                    # learn which that was, once per operation (from the window if there).
                    first = self.by_origin(origin)
                    if first is not None and first.dot != entry.dot:
                        self._first_copy[origin] = (first.key, first.dot)
            self._account(entry)
            self._keep(entry)
            yield entry

    def _note_copy(self, origin: Origin, entry: Entry) -> None:
        """``entry`` (not added yet) records an operation the client sent before: if the log
        already records it, remember which copy counts from now on."""
        known = self._first_copy.get(origin)
        if known is None:
            first = self.by_origin(origin)  # from the window, else one archive read
            if first is None:
                return  # the operation's first copy (sequenced out of the client's order)
            known = (first.key, first.dot)
        # Two partitions may each have sequenced the same resent operation; the copy first
        # in log order is the one that counts, everywhere: a merge may bring an earlier one.
        key = entry.key
        self._first_copy[origin] = known if known[0] < key else (key, entry.dot)

    def _account(self, entry: Entry) -> None:
        self._count += 1
        counters = self._counters.get(entry.dot.server)
        if counters is None:
            counters = self._counters[entry.dot.server] = CounterRanges()
        counters.add(entry.dot.counter)
        self.clock = self.clock.merge(entry.clock)

    def _keep(self, entry: Entry) -> bool:
        """Put ``entry`` in the hot window if it belongs there; True if at the tail."""
        key = entry.key
        if self._floor is not None and key < self._floor:
            if self.cold_from is None or key < self.cold_from:
                self.cold_from = key
            self._went_cold(entry)
            return False  # older than the window: the archive alone holds it
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
            if not self._chat_keys or key > self._chat_keys[-1]:
                self._chat_keys.append(key)
                self._chats.append(entry)
            else:
                index = bisect_right(self._chat_keys, key)
                self._chat_keys.insert(index, key)
                self._chats.insert(index, entry)
        origin = entry.origin
        if origin is not None:
            known = self._hot_origin.get(origin)
            if known is None or key < known.key:
                self._hot_origin[origin] = entry
        # Evict in slices of a 32nd of the window: amortised (not a shift per entry), and
        # each a short pause (a slice of 625 by default), not one of 2,500 every few seconds.
        if len(self._entries) > self.hot + self.hot // 32:
            self._evict(len(self._entries) - self.hot)
        return at_tail

    def _evict(self, count: int) -> None:
        gone = self._entries[:count]
        del self._entries[:count]
        del self._keys[:count]
        self._floor = self._keys[0]
        chats = bisect_left(self._chat_keys, self._floor)
        del self._chat_keys[:chats]
        del self._chats[:chats]
        for entry in gone:
            del self._by_dot[entry.dot]
            if entry.origin is not None:
                if self._hot_origin.get(entry.origin) is entry:
                    del self._hot_origin[entry.origin]
                self._went_cold(entry)
        if self.on_evict is not None:
            self.on_evict(gone)

    def _went_cold(self, entry: Entry) -> None:
        """``entry`` is below the window from now on: only the archive holds it."""
        origin = entry.origin
        if origin is not None and origin.cmid > self._cold_high.get(origin.client_id, 0):
            self._cold_high[origin.client_id] = origin.cmid

    # -- walking in key order ------------------------------------------------------
    def _walk(self, start: Key | None, chats: bool) -> Iterator[Entry]:
        """Entries (or chat entries) whose key is >= ``start``, in order: the archive's
        below the hot window, then the window's."""
        floor = self._floor
        if floor is not None and (start is None or start < floor):
            yield from self._walk_archive(start, floor, chats)
            start = floor
        keys, entries = (self._chat_keys, self._chats) if chats else (self._keys, self._entries)
        begin = 0 if start is None else bisect_left(keys, start)
        # A copy: a caller may add entries while it walks (a chunk taken, then merged).
        yield from entries[begin:]

    def _walk_archive(self, start: Key | None, end: Key | None, chats: bool) -> Iterator[Entry]:
        while True:
            page = self.archive.entries_from(start, ARCHIVE_PAGE, chats)
            for entry in page:
                if end is not None and entry.key >= end:
                    return
                yield entry
            if len(page) < ARCHIVE_PAGE:
                return
            last = page[-1].key
            start = (last[0], last[1], last[2] + 1)

    def missing_for(self, clock: VectorClock) -> Iterator[Entry]:
        """Entries not covered by ``clock``, in log order: what a replica at ``clock`` lacks."""
        start = self._first_missing(clock)
        if start is None:
            return
        for entry in self._walk(start, chats=False):
            if not entry.clock <= clock:
                yield entry

    def chats_missing_for(self, clock: VectorClock, since: Key | None = None) -> Iterator[Entry]:
        """The chat entries of ``missing_for(clock)``, without walking the others; none
        before key ``since`` (the caller knows nothing before it is wanted)."""
        start = self._first_missing(clock)
        if start is None:
            return
        if since is not None and since > start:
            start = since
        for entry in self._walk(start, chats=True):
            if not entry.clock <= clock:
                yield entry

    def _first_missing(self, clock: VectorClock) -> Key | None:
        """Key of the first entry ``clock`` may not cover (everything before it is)."""
        start: Key | None = None
        for server, have in self.clock.items():
            seen = clock.get(server)
            if have <= seen:
                continue
            counters = self._counters.get(server)
            counter = counters.first_above(seen) if counters is not None else None
            if counter is None:
                continue
            entry = self.get(Dot(server, counter))
            if entry is not None and (start is None or entry.key < start):
                start = entry.key
        return start

    def chats_before(
        self, before: Dot | None, limit: int, want: Callable[[Entry], bool]
    ) -> list[Entry]:
        """Up to ``limit`` chat entries before ``before`` (newest last) for which
        ``want(entry)`` is true: scrollback."""
        end: Key | None = None
        if before is not None:
            anchor = self.get(before)
            if anchor is not None:
                end = anchor.key
        found: list[Entry] = []
        stop = len(self._chat_keys) if end is None else bisect_left(self._chat_keys, end)
        for index in range(stop - 1, -1, -1):
            entry = self._chats[index]
            if want(entry):
                found.append(entry)
                if len(found) >= limit:
                    found.reverse()
                    return found
        if self._floor is not None:
            # The rest from the archive, below the window (or below ``before``).
            cursor = self._floor if end is None or end > self._floor else end
            scanned = 0
            while scanned < HISTORY_SCAN:
                page = self.archive.chats_before(cursor, ARCHIVE_PAGE)
                for entry in page:
                    if want(entry):
                        found.append(entry)
                        if len(found) >= limit:
                            found.reverse()
                            return found
                scanned += len(page)
                if len(page) < ARCHIVE_PAGE:
                    break
                cursor = page[-1].key
        found.reverse()
        return found
