"""Late wake-ups: a node whose timer ran late reads what waited before it judges anyone
silent."""

from __future__ import annotations

INF = float("inf")


class WakeWatch:
    """The deadline a node last gave its driver, and its judgments held after a late tick.

    A tick that runs more than ``late_after`` past that deadline says the node itself was
    the silent one (a GC pause, a starved CPU): what its peers sent meanwhile still sits
    unread behind the timer. For ``grace`` after such a tick, nobody is judged silent.
    """

    __slots__ = ("due", "grace", "judge_after", "late_after")

    def __init__(self, late_after: float, grace: float) -> None:
        self.late_after = late_after
        self.grace = grace
        self.due = INF
        self.judge_after = -INF

    def promised(self, due: float | None) -> float | None:
        """Record the deadline given to the driver; returns it."""
        self.due = INF if due is None else due
        return due

    def woke(self, now: float) -> bool:
        """A tick at ``now``: True if it ran late (judgments wait ``grace`` from now)."""
        if now - self.due > self.late_after:
            self.judge_after = now + self.grace
            return True
        return False
