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


@dataclass(frozen=True, slots=True)
class Issued:
    """A challenge we drew: for whom (the nonce and address that asked) and when."""

    client_nonce: bytes
    peer: str
    at: float


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
    ) -> None:
        self.secrets = secrets  # the current secret first, then the next one during a rotation
        self.server_id = server_id
        self.leader = leader  # (whether we lead, the leader's address)
        self.release_name = release_name  # runs the command on the node: its outcome
        self.reply = reply
        self.drops = drops
        self.clock = clock
        self.challenges: OrderedDict[bytes, Issued] = OrderedDict()
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
        self._result(command, peer, outcome, detail, secret)

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
