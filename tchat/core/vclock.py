"""Sparse, immutable vector clocks keyed by server ID."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import Enum


class Order(Enum):
    """How two clocks relate under happened-before."""

    EQUAL = "equal"
    BEFORE = "before"
    AFTER = "after"
    CONCURRENT = "concurrent"


class VectorClock:
    """An immutable map server ID -> counter; missing entries are zero.

    One entry per server that ever sequenced a message, so its size grows with the
    number of servers, not of users.
    """

    __slots__ = ("_entries", "_hash", "_total")

    def __init__(self, entries: Mapping[int, int] | Iterable[tuple[int, int]] = ()) -> None:
        items = entries.items() if isinstance(entries, Mapping) else entries
        cleaned: dict[int, int] = {}
        for key, value in items:
            if value < 0:
                raise ValueError(f"vector clock entry {key} is negative: {value}")
            if value:
                cleaned[key] = value
        self._entries = cleaned
        self._hash: int | None = None
        self._total = sum(cleaned.values())

    @classmethod
    def trusted(cls, entries: dict[int, int]) -> VectorClock:
        """Wrap a dict already known to hold only positive counters (no copy, no checks):
        the caller gives the dict up (the clock is immutable only if nobody else writes it)."""
        # Named self: this is the other constructor, it fills the new instance's slots.
        self = cls.__new__(cls)
        self._entries = entries
        self._hash = None
        self._total = sum(entries.values())
        return self

    # -- reading -------------------------------------------------------------
    def __getitem__(self, server_id: int) -> int:
        return self._entries.get(server_id, 0)

    def get(self, server_id: int) -> int:
        return self._entries.get(server_id, 0)

    def items(self) -> Iterator[tuple[int, int]]:
        """Entries in ascending server-ID order (never hash order)."""
        return iter(sorted(self._entries.items()))

    def as_dict(self) -> dict[int, int]:
        return dict(sorted(self._entries.items()))

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def highest(self) -> int:
        """The largest server ID or counter it holds (0 if empty): one range check."""
        entries = self._entries
        if not entries:
            return 0
        return max(max(entries), max(entries.values()))

    def within(self, bound: int) -> bool:
        """Whether every server ID and counter is at most ``bound``: ``highest() <= bound``,
        answered from the cached sum when it can be (counters are never negative, so each
        is at most the sum), which spares a pass over the counters on every stored entry."""
        entries = self._entries
        if not entries:
            return True
        if self._total <= bound:
            return max(entries) <= bound
        return max(max(entries), max(entries.values())) <= bound

    @property
    def total(self) -> int:
        """Sum of all entries: grows strictly along happened-before (a Lamport time)."""
        return self._total

    # -- building ------------------------------------------------------------
    def increment(self, server_id: int) -> VectorClock:
        entries = dict(self._entries)
        entries[server_id] = entries.get(server_id, 0) + 1
        return VectorClock.trusted(entries)

    def merge(self, other: VectorClock) -> VectorClock:
        if other is self or not other._entries:
            return self
        if not self._entries:
            return other
        mine = self._entries
        theirs = other._entries
        # The common case first: ``other`` covers us (a log taking its next entry, a backup's
        # newer ack, a client's newer clock). Then it is the merge, and no dict is built.
        # (A clock that covers us has at least our entries and our sum.)
        if other._total >= self._total and len(theirs) >= len(mine):
            for key, value in mine.items():  # noqa: SIM110 (a loop: see __le__)
                if value > theirs.get(key, 0):
                    break
            else:
                return other
        entries: dict[int, int] | None = None
        for key, value in other._entries.items():
            if value > mine.get(key, 0):
                if entries is None:
                    entries = dict(mine)
                entries[key] = value
        if entries is None:
            return self
        return VectorClock.trusted(entries)

    def meet(self, other: VectorClock) -> VectorClock:
        """Pointwise minimum: what both clocks cover."""
        theirs = other._entries
        # The common case first: a clock already covered by ``other`` is its own meet, and
        # comparing allocates nothing (a leader meets every operation's clock with its
        # log's: issue 13 measured the dict build at ~1.5 us an operation).
        for key, value in self._entries.items():
            if value > theirs.get(key, 0):
                break
        else:
            return self
        entries = {k: min(v, theirs[k]) for k, v in self._entries.items() if k in theirs}
        return VectorClock.trusted(entries)

    # -- comparing -----------------------------------------------------------
    def __le__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        theirs = other._entries
        # A loop, not all() over a generator: this runs for every entry the leader commits
        # and every operation it admits (py-spy: the generator was ~10% of a busy leader).
        for key, value in self._entries.items():  # noqa: SIM110 (see above)
            if value > theirs.get(key, 0):
                return False
        return True

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self <= other and self._entries != other._entries

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return other <= self

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return other < self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VectorClock):
            return NotImplemented
        return self._entries == other._entries

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(sorted(self._entries.items())))
        return self._hash

    def compare(self, other: VectorClock) -> Order:
        le = self <= other
        ge = other <= self
        if le and ge:
            return Order.EQUAL
        if le:
            return Order.BEFORE
        if ge:
            return Order.AFTER
        return Order.CONCURRENT

    def concurrent(self, other: VectorClock) -> bool:
        return self.compare(other) is Order.CONCURRENT

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v}" for k, v in self.items())
        return f"VectorClock({{{inner}}})"


EMPTY_CLOCK = VectorClock()
