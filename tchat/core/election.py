"""LeLann-Chang-Roberts leader election on the ring of server IDs, hop by hop acknowledged."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Verdict(Enum):
    """What a server does with an election token it received."""

    DROP = "drop"  # a smaller candidate while participating, or a stale round
    FORWARD = "forward"  # pass the (possibly replaced) candidate to the next neighbour
    ELECTED = "elected"  # our own ID came back: we lead


@dataclass(slots=True)
class Hop:
    """A token sent and not yet acknowledged; on timeout the neighbour is skipped."""

    term: int
    candidate: int
    target: int
    deadline: float
    skipped: set[int] = field(default_factory=set)


class LcrElection:
    """One server's view of the election rounds.

    Rounds are numbered by ``term``; a token of a newer term starts a new round here,
    a token of an older term is dropped. Within a round it is classic LCR: forward a
    larger candidate, replace a smaller one with our own ID unless already participant,
    win when our own ID returns. Each (term, candidate) is forwarded at most once, so a
    token whose candidate crashed dies after one lap instead of circling forever; the
    round timeout then starts a fresh round without it.
    """

    def __init__(self, my_id: int) -> None:
        self.my_id = my_id
        self.term = 0
        self.closed_term = 0  # rounds up to this one are over here
        self.participant = False
        self.deadline: float | None = None
        self.started_at: float | None = None
        self.hop: Hop | None = None
        self._forwarded: set[int] = set()

    # -- rounds ------------------------------------------------------------------
    def observe(self, term: int) -> bool:
        """Note a term seen anywhere; True if it opened a newer round here."""
        if term <= self.term:
            return False
        self.term = term
        self.participant = False
        self.hop = None
        self._forwarded = set()
        self.deadline = None
        self.started_at = None
        return True

    def begin(self, term: int, now: float, timeout: float) -> int:
        """Start round ``term`` as an initiator; returns the candidate to send (us)."""
        self.observe(term)
        self.participant = True
        self.started_at = now
        self.deadline = now + timeout
        self._forwarded.add(self.my_id)
        return self.my_id

    def receive(self, term: int, candidate: int, now: float, timeout: float) -> tuple[Verdict, int]:
        if term < self.term or term <= self.closed_term:
            # A stale round, or a late token of a round that is over here: a token that
            # wandered (a paused server) must not elect anyone a second time.
            return Verdict.DROP, candidate
        self.observe(term)
        if self.started_at is None:
            self.started_at = now
        if self.deadline is None:
            self.deadline = now + timeout
        if candidate == self.my_id:
            return Verdict.ELECTED, candidate
        if candidate < self.my_id:
            if self.participant:
                return Verdict.DROP, candidate
            candidate = self.my_id
        if candidate in self._forwarded:
            return Verdict.DROP, candidate
        self.participant = True
        self._forwarded.add(candidate)
        return Verdict.FORWARD, candidate

    def relay(self, term: int, candidate: int) -> bool:
        """For a server sitting a round out: True the first time it sees (term, candidate),
        which it then passes on unchanged."""
        self.observe(term)
        if term < self.term or term <= self.closed_term or candidate in self._forwarded:
            return False
        self._forwarded.add(candidate)
        return True

    def finish(self) -> None:
        """A leader of this term (or newer) is known: the round is over here."""
        self.closed_term = max(self.closed_term, self.term)
        self.participant = False
        self.hop = None
        self.deadline = None
        self.started_at = None

    # -- hops --------------------------------------------------------------------
    def send(
        self, candidate: int, ring: list[int], now: float, hop_timeout: float, skip: set[int]
    ) -> int | None:
        """Pick the next neighbour clockwise that is not skipped; remember the hop."""
        target = next_on_ring(ring, self.my_id, skip)
        if target is None:
            self.hop = None
            return None
        self.hop = Hop(self.term, candidate, target, now + hop_timeout, set(skip))
        return target

    def acked(self, term: int, candidate: int, src: int) -> None:
        hop = self.hop
        if hop is not None and (hop.term, hop.candidate, hop.target) == (term, candidate, src):
            self.hop = None

    def hop_expired(self, now: float) -> Hop | None:
        hop = self.hop
        if hop is not None and now >= hop.deadline:
            hop.skipped.add(hop.target)
            return hop
        return None

    def next_deadline(self) -> float | None:
        times = [
            t for t in (self.deadline, self.hop.deadline if self.hop else None) if t is not None
        ]
        return min(times) if times else None


def next_on_ring(ring: list[int], me: int, skip: set[int]) -> int | None:
    """The next server ID after ``me`` clockwise (ascending, wrapping), not in ``skip``."""
    candidates = [sid for sid in ring if sid != me and sid not in skip]
    if not candidates:
        return None
    higher = [sid for sid in candidates if sid > me]
    return min(higher) if higher else min(candidates)
