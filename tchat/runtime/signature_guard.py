"""How many signature checks multicast senders may cost a client: per source, then blocked.

A room's member holds the room key, so it can seal frames whose signature every other
member must check (an Ed25519 verification each, room_keys.py); anyone can send the lobby
group a signed-looking datagram. ``SignatureGuard`` decides, per source address, whether
such a datagram is still worth a check (docs/PROTOCOL.md, "Room keys"; docs/SECURITY.md,
"A member forging signatures").
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tchat.runtime.ratelimit import TokenBucket

# A source whose signatures failed this many times within the window is not verified for
# a while: a flood from it costs that many checks, not one per datagram. Sources that never
# signed anything genuine share a budget, so a flood from ever new addresses (spoofed, or
# one host's many ports) is bounded too.
STRIKES = 8
STRIKE_WINDOW = 10.0
BLOCKED_FOR = 30.0
STRIKE_SOURCES = 1024  # sources with strikes or a block (LRU)
GOOD_SOURCES = 64  # sources that signed genuinely lately: the leaders (LRU)
STRANGER_CHECKS = (32.0, 64.0)  # checks per second, burst, for sources never found good


@dataclass(slots=True)
class _Strikes:
    count: int
    since: float
    blocked_until: float = 0.0


class SignatureGuard:
    """Which multicast sources a client still spends signature checks on.

    Keyed by source address (host and port: a leader sends from its node's socket, and a
    host's other sockets must not block it). A source is blocked after ``STRIKES`` bad
    signatures within ``STRIKE_WINDOW`` s, for ``BLOCKED_FOR`` s; its frames are refused
    unverified meanwhile. A genuine signature does not clear strikes: an attacker spoofing
    a leader's address would otherwise get K-1 free checks per genuine frame. Sources not
    seen signing genuinely lately share ``STRANGER_CHECKS``, so new addresses buy no new
    checks past it; those seen signing genuinely (the leader) do not wait on that budget.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.strikes: OrderedDict[str, _Strikes] = OrderedDict()
        self.good: OrderedDict[str, None] = OrderedDict()
        self.strangers = TokenBucket(*STRANGER_CHECKS, clock())
        self.checks = 0  # signature checks allowed (what the senders cost us)

    def allow(self, source: str) -> bool:
        """Whether to verify a datagram from ``source`` (False: refuse it unverified)."""
        now = self.clock()
        record = self.strikes.get(source)
        if record is not None and record.blocked_until > now:
            return False
        if source not in self.good and not self.strangers.take(now):
            return False
        self.checks += 1
        return True

    def failed(self, source: str) -> None:
        """A signature from ``source`` did not verify."""
        now = self.clock()
        record = self.strikes.get(source)
        if record is None or now - record.since > STRIKE_WINDOW:
            record = _Strikes(0, now, record.blocked_until if record is not None else 0.0)
        record.count += 1
        if record.count >= STRIKES:
            record.blocked_until = now + BLOCKED_FOR
            record.count, record.since = 0, now
        self.strikes[source] = record
        self.strikes.move_to_end(source)
        while len(self.strikes) > STRIKE_SOURCES:
            self.strikes.popitem(last=False)

    def passed(self, source: str) -> None:
        """A signature from ``source`` verified: it may be a leader's address."""
        self.good[source] = None
        self.good.move_to_end(source)
        while len(self.good) > GOOD_SOURCES:
            self.good.popitem(last=False)

    def blocked(self, source: str) -> bool:
        record = self.strikes.get(source)
        return record is not None and record.blocked_until > self.clock()
