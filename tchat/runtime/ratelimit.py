"""Token bucket for per-session rate limiting of client operations, and the bounded table
that keeps them per source."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

# A token refilled by float arithmetic may come out at 0.9999999999: counted as whole, so
# that ``ready_at`` saying "now" and ``take`` succeeding always agree.
EPSILON = 1e-6


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``rate <= 0`` means unlimited."""

    __slots__ = ("burst", "rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._stamp = now

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        if self.unlimited:
            return True
        self._refill(now)
        if self._tokens >= 1.0 - EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def ready_at(self, now: float) -> float:
        """When the next token will be there (``now`` if one already is)."""
        if self.unlimited:
            return now
        self._refill(now)
        missing = 1.0 - EPSILON - self._tokens
        return now if missing <= 0 else now + missing / self.rate


K = TypeVar("K")
V = TypeVar("V")


class LruTable(Generic[K, V]):
    """A bounded map that forgets its least recently used entry when full."""

    def __init__(self, size: int, make: Callable[[K], V]) -> None:
        self.size = size
        self.make = make
        self.entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V:
        entries = self.entries
        value = entries.get(key)
        if value is None:
            if len(entries) >= self.size:
                entries.popitem(last=False)
            value = entries[key] = self.make(key)
        else:
            entries.move_to_end(key)
        return value

    def __len__(self) -> int:
        return len(self.entries)
