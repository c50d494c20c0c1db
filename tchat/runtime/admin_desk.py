"""A server's side of ``tchat admin``: draws challenges, checks operators' MACs, runs commands.

The wire format and its MACs are tchat/crypto/admin.py. This desk holds what makes a
command count once: each challenge it drew (bounded, ``CHALLENGE_LIFETIME`` seconds),
forgotten on the first command that uses it. Every refusal is counted in the transport's
DropCounters (``admin-*`` reasons); a stranger's datagram costs a token lookup, and within
its budget an HMAC per secret held, nothing else.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tchat.core.names import checked_name
from tchat.crypto import admin
from tchat.crypto.cluster import ClusterSecret
from tchat.crypto.errors import CryptoError, Reason
from tchat.runtime.connection import DropCounters
from tchat.runtime.limits import LruTable
from tchat.runtime.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

CHALLENGE_LIFETIME = 10.0  # an operator answers its challenge within a round trip or two
CHALLENGES_KEPT = 256  # outstanding challenges; a flood evicts the oldest (the operator retries)
# Operators are people at a terminal: a handful of datagrams a minute. A host past its
# budget, or all hosts together past theirs, is refused before any MAC is computed.
PER_HOST = (5.0, 20.0)  # tokens per second, burst
TOTAL = (50.0, 100.0)
HOST_TABLE = 1024
# A release is answered once its entries commit (every admitted backup holds them); past
# this the operator hears "pending" and may ask again. Waiting replies are bounded.
CONFIRM_TIMEOUT = 5.0
MAX_WAITING = 32


@dataclass(frozen=True, slots=True)
class Issued:
    """A challenge we drew: for whom (the nonce and address that asked) and when."""

    client_nonce: bytes
    peer: str
    at: float


@dataclass(frozen=True, slots=True)
class Waiting:
    """An operator whose release is sequenced, to be answered when it commits."""

    command: admin.Command
    peer: str
    secret: ClusterSecret


class AdminDesk:
    """One per server with a cluster secret; ``receive`` is the transport's admin hook."""

    def __init__(
        self,
        secrets: Callable[[], Sequence[ClusterSecret]],
        server_id: int,
        leader: Callable[[], tuple[bool, str]],
        release_name: Callable[[str], str],
        reply: Callable[[bytes, str], None],
        drops: DropCounters,
        clock: Callable[[], float] = time.monotonic,
        later: Callable[[float, Callable[[], None]], object] | None = None,
    ) -> None:
        self.secrets = secrets  # the current secret first, then the next one during a rotation
        self.server_id = server_id
        self.leader = leader  # (whether we lead, the leader's address)
        self.release_name = release_name  # runs the command on the node: its outcome
        self.reply = reply
        self.drops = drops
        self.clock = clock
        self.challenges: OrderedDict[bytes, Issued] = OrderedDict()
        # Runs a callback after a delay (the loop's call_later); None: answer at once.
        self.later = later
        self.waiting: dict[str, list[Waiting]] = {}  # released names, until they commit
        now = clock()
        self.total = TokenBucket(*TOTAL, now)
        self.hosts: LruTable[str, TokenBucket] = LruTable(
            HOST_TABLE, lambda _host: TokenBucket(*PER_HOST, self.clock())
        )

    def receive(self, data: bytes, peer: str) -> None:
        now = self.clock()
        host = peer.rsplit(":", 1)[0]
        if not self.hosts.get(host).take(now) or not self.total.take(now):
            self.drops.count("admin-limited", peer, "too many admin datagrams")
            return
        secrets = self.secrets()
        try:
            message, _used = admin.decode(data, secrets)
        except CryptoError as exc:
            reason = "admin-bad-mac" if exc.reason is Reason.BAD_TAG else "admin-malformed"
            self.drops.count(reason, peer, str(exc))
            return
        match message:
            case admin.Hello():
                self._challenge(message, peer, secrets[0], now)
            case admin.Command():
                self._command(message, peer, secrets[0], now)
            case _:
                self.drops.count("admin-malformed", peer, f"{type(message).__name__} to a server")

    def _challenge(self, hello: admin.Hello, peer: str, secret: ClusterSecret, now: float) -> None:
        self._expire(now)
        challenge = os.urandom(admin.NONCE_SIZE)
        self.challenges[challenge] = Issued(hello.client_nonce, peer, now)
        while len(self.challenges) > CHALLENGES_KEPT:
            self.challenges.popitem(last=False)
        leads, leader_addr = self.leader()
        answer = admin.Challenge(hello.client_nonce, challenge, self.server_id, leads, leader_addr)
        self.reply(admin.encode(answer, secret), peer)

    def _command(
        self, command: admin.Command, peer: str, secret: ClusterSecret, now: float
    ) -> None:
        issued = self.challenges.pop(command.challenge, None)
        if (
            issued is None
            or now - issued.at > CHALLENGE_LIFETIME
            or issued.client_nonce != command.client_nonce
            or issued.peer != peer
        ):
            # A genuine command seen before (the challenge is spent), or one for another
            # server or address: a replay. Counted; the operator is told to start again.
            self.drops.count("admin-replayed", peer, f"{command.op}: no such fresh challenge")
            self._result(
                command, peer, "refused", "a stale or replayed command: run it again", secret
            )
            return
        name, problem = checked_name(command.arg)
        if problem is not None:
            self._result(command, peer, "refused", problem, secret)
            return
        outcome = self.release_name(name)
        leader_addr = self.leader()[1]
        detail = {
            "released": f"released the name {name}: its sessions ended; any key may claim it",
            "not-claimed": f"no key holds the name {name}",
            "not-leader": f"this server does not lead; the leader is at {leader_addr or '?'}",
        }.get(outcome, outcome)
        if outcome == "released":
            logger.warning("an operator at %s released the name %s", peer, name)
            if self.later is not None and self._waiting() < MAX_WAITING:
                # Answered when the release commits (``committed``), or as pending.
                waiting = Waiting(command, peer, secret)
                self.waiting.setdefault(name, []).append(waiting)
                self.later(CONFIRM_TIMEOUT, lambda: self._unconfirmed(name, waiting))
                return
        self._result(command, peer, outcome, detail, secret)

    def committed(self, name: str) -> None:
        """The release of ``name`` committed: the operators waiting hear it is done."""
        for waiting in self.waiting.pop(name, []):
            detail = f"released the name {name}: its sessions ended; any key may claim it"
            self._result(waiting.command, waiting.peer, "released", detail, waiting.secret)

    def _unconfirmed(self, name: str, waiting: Waiting) -> None:
        queue = self.waiting.get(name, [])
        if waiting not in queue:
            return  # answered already
        queue.remove(waiting)
        if not queue:
            del self.waiting[name]
        detail = (
            f"the release of {name} is sequenced but did not commit within"
            f" {CONFIRM_TIMEOUT:.0f} s (a backup slow or gone?): run the command again"
        )
        self._result(waiting.command, waiting.peer, "pending", detail, waiting.secret)

    def _waiting(self) -> int:
        return sum(len(queue) for queue in self.waiting.values())

    def _result(
        self, command: admin.Command, peer: str, outcome: str, detail: str, secret: ClusterSecret
    ) -> None:
        leader_addr = self.leader()[1]
        answer = admin.Result(
            command.client_nonce, outcome, detail[: admin.MAX_DETAIL], leader_addr
        )
        self.reply(admin.encode(answer, secret), peer)

    def _expire(self, now: float) -> None:
        while self.challenges:
            oldest = next(iter(self.challenges.values()))
            if now - oldest.at <= CHALLENGE_LIFETIME:
                break
            self.challenges.popitem(last=False)
