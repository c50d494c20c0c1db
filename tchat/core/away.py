"""A user's away status as their client keeps it: /away, /back, auto-away after idle, paced."""

from __future__ import annotations

import math
import unicodedata

from tchat.core.messages import MAX_AWAY_REASON, SetAway
from tchat.core.names import BIDI, INVISIBLE, MAX_MARKS, describe

AUTO_REASON = "idle"  # the reason auto-away gives: a keystroke clears only an away with it
# Seconds between two status changes a client sends. An idle/back flap (or a user toggling
# /away) is coalesced into at most one change per interval: the log and every user list
# see the settled state, not each flip. The leader's per-session bucket (runtime
# limits.py, "status") is the bound for a client that does not pace itself.
MIN_CHANGE_INTERVAL = 5.0
Status = tuple[bool, str]  # (away, reason)
CATEGORY_WHY = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
}


# In an away reason: the joiner and emoji presentation selector that emoji sequences need
# ("\U0001f9d1\u200d\U0001f4bb coding"), though both are invisible on their own.
_REASON_ALLOWED = frozenset([0x200D, 0xFE0F])
_REASON_REFUSED = frozenset(CATEGORY_WHY)


def away_reason_problem(reason: str) -> str | None:
    """Why ``reason`` may not be an away reason, or None. One line of at most
    MAX_AWAY_REASON code points that every user list shows beside a name: no control,
    bidi or invisible character (a newline or a bidi override would forge the next row),
    no pile of combining marks, no blank edges (a reason of spaces reads as none)."""
    if len(reason) > MAX_AWAY_REASON:
        return f"away reason is longer than {MAX_AWAY_REASON} characters"
    if reason != reason.strip():
        return "away reason starts or ends with a blank"
    marks = 0
    for char in reason:
        code = ord(char)
        if code in _REASON_ALLOWED:
            marks = 0
            continue
        category = unicodedata.category(char)
        if code in BIDI:
            return f"away reason contains a bidi control, {describe(char)}"
        if code in INVISIBLE or category in _REASON_REFUSED:
            why = CATEGORY_WHY.get(category, "an invisible character")
            return f"away reason contains {why}, {describe(char)}"
        if category[0] == "M":
            marks += 1
            if marks > MAX_MARKS:
                return f"away reason has more than {MAX_MARKS} combining marks in a row"
        else:
            marks = 0
    return None


class AwayTracker:
    """Decides which SetAway a client sends and when. Sans-IO: time is passed in.

    ``wanted`` is what the user (or idleness) asks for, ``sent`` what the servers were last
    asked for; a change goes out at once unless one went less than ``min_interval`` ago,
    then at the end of that interval, if it is still wanted by then.
    """

    def __init__(
        self, idle_after: float, now: float, min_interval: float = MIN_CHANGE_INTERVAL
    ) -> None:
        if idle_after < 0 or not math.isfinite(idle_after):
            raise ValueError(f"idle_after must be >= 0 seconds, not {idle_after!r}")
        self.idle_after = idle_after  # 0: no auto-away
        self.min_interval = min_interval
        self.wanted: Status = (False, "")
        self.sent: Status = (False, "")
        self.auto = False  # the wanted away is auto-away (a keystroke ends it)
        self.last_input = now
        self.last_change = -math.inf

    @property
    def pending(self) -> bool:
        """A change is wanted that pacing holds back."""
        return self.wanted != self.sent

    def manual(self, away: bool, reason: str, now: float) -> SetAway | None:
        """The user said /away [REASON] or /back; the SetAway to send now, if any."""
        self.last_input = now
        return self._want(away, reason, now, auto=False)

    def input(self, now: float) -> SetAway | None:
        """The user typed: the idle clock restarts, and an auto-away (never a manual one)
        ends. Cheap: called on every keystroke."""
        self.last_input = now
        if self.auto and self.wanted[0]:
            return self._want(False, "", now, auto=False)
        return None

    def tick(self, now: float) -> SetAway | None:
        """Time passed: go auto-away after ``idle_after`` without input, or send a change
        pacing held back."""
        if self.idle_after and not self.wanted[0] and now >= self.last_input + self.idle_after:
            return self._want(True, AUTO_REASON, now, auto=True)
        return self._flush(now)

    def adopt(self, away: bool, reason: str) -> None:
        """The servers say we are ``away`` with ``reason`` and nothing of ours is on its way
        (another terminal of ours changed it, or a new login started us online): take it
        as both wanted and sent. Never as an auto-away: a keystroke does not end it."""
        self.wanted = self.sent = (away, reason if away else "")
        self.auto = False

    def next_deadline(self) -> float | None:
        deadlines = []
        if self.idle_after and not self.wanted[0]:
            deadlines.append(self.last_input + self.idle_after)
        if self.pending:
            deadlines.append(self.last_change + self.min_interval)
        return min(deadlines) if deadlines else None

    def send_at(self) -> float:
        """When a held-back change goes out (``-inf`` with none held)."""
        return self.last_change + self.min_interval if self.pending else -math.inf

    def _want(self, away: bool, reason: str, now: float, *, auto: bool) -> SetAway | None:
        self.wanted = (away, reason if away else "")
        self.auto = auto and away
        return self._flush(now)

    def _flush(self, now: float) -> SetAway | None:
        if not self.pending or now < self.last_change + self.min_interval:
            return None
        self.sent = self.wanted
        self.last_change = now
        return SetAway(*self.sent)
