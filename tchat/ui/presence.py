"""The client screen's away status: /away and /back, auto-away after idle, "bob is away" once."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from tchat.core.away import AUTO_REASON, AwayTracker
from tchat.core.messages import Operation, SetAway
from tchat.ui.chat_model import ChatModel
from tchat.ui.sanitize import sanitize


class PresenceHost(Protocol):
    """What Presence needs of the client screen (which holds it: no import back)."""

    model: ChatModel
    ops: dict[int, str]  # cmid -> what a non-chat operation was

    def say(self, text: str) -> None: ...


ANSWERED_PEERS = 256  # peers whose away we told the user of, remembered (least recent go)


class Presence:
    """Carries out the AwayTracker's decisions on a screen: submits, and says what happened."""

    def __init__(
        self,
        screen: PresenceHost,
        submit: Callable[[Operation, str], int | None],
        idle_after: float,
        now: float,
    ) -> None:
        self.screen = screen
        self.submit = submit
        self.tracker = AwayTracker(idle_after, now)
        # peer -> (since, reason) of the away we told of: once per away, not once per PM
        self.answered: OrderedDict[str, tuple[float, str]] = OrderedDict()

    @property
    def away(self) -> bool:
        """Whether this user is (or is about to be marked) away."""
        return self.tracker.wanted[0]

    def manual(self, away: bool, reason: str, now: float) -> None:
        op = self.tracker.manual(away, reason, now)
        if op is not None:
            self._send(op)
        elif self.tracker.pending:
            wait = max(0.0, self.tracker.send_at() - now)
            self.screen.say(f"status changes are paced: this one goes out in {wait:.0f} s")
        else:
            self.screen.say("you are already away" if away else "you are not away")

    def typed(self, now: float) -> None:
        """A keystroke: ends an auto-away, restarts the idle clock. Called per keystroke."""
        op = self.tracker.input(now)
        if op is not None:
            self._send(op)

    def tick(self, now: float) -> None:
        op = self.tracker.tick(now)
        if op is not None:
            self._send(op)

    def observe(self) -> None:
        """The user list changed: if it says otherwise about us than what we last sent,
        and no away/back of ours is pending or unanswered, it is right (another terminal
        of ours, or a login that started us online). Cheap: once per user-list change."""
        row = self.screen.model.users.get(self.screen.model.me)
        if row is None or row.status == "gone" or self.tracker.pending:
            return
        seen = (row.status == "away", row.reason)
        if seen == self.tracker.sent:
            return
        if any(what in ("away", "back") for what in self.screen.ops.values()):
            return  # ours is on its way: the list will catch up
        self.tracker.adopt(*seen)

    def _send(self, op: SetAway) -> None:
        what = "away" if op.away else "back"
        if self.submit(op, what) is None:
            return
        if not op.away:
            self.screen.say("you are back")
        elif self.tracker.auto and op.away_reason == AUTO_REASON:
            minutes = self.tracker.idle_after / 60
            self.screen.say(f"you are away: idle for {minutes:g} min (typing brings you back)")
        elif op.away_reason:
            self.screen.say(f"you are away: {sanitize(op.away_reason)} (/back when back)")
        else:
            self.screen.say("you are away (/back when back)")

    def private_to(self, peer: str) -> None:
        """The user wrote to ``peer``: if ``peer`` is away, say so once per away (from the
        user list: no traffic), as an IRC server's RPL_AWAY does."""
        row = self.screen.model.users.get(peer)
        if row is None or row.status != "away":
            return
        seen = (row.since, row.reason)
        if self.answered.get(peer) == seen:
            self.answered.move_to_end(peer)
            return
        self.answered[peer] = seen
        self.answered.move_to_end(peer)
        while len(self.answered) > ANSWERED_PEERS:
            self.answered.popitem(last=False)
        reason = f": {sanitize(row.reason)}" if row.reason else ""
        self.screen.say(f"{sanitize(peer)} is away{reason}")
