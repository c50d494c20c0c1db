"""Account passwords on a server: argon2id hashing and checking, off the event loop and bounded.

The leader's runtime is the only place a password exists on a server. A ``SetPassword``
becomes the core-only ``PasswordHashed`` (the PHC string), a Register that carries a
password becomes the fact ``PasswordLogin`` once the password matched the account's hash;
the core decides from there (SECURITY.md "Passwords"). Every password that reaches us is
the word of whoever holds a session: each hash costs ~0.2 s of a core and 64 MiB, so the
work is rate-limited per host and per name, one hash runs at a time and few wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from tchat.core.desk import no_password
from tchat.core.messages import (
    MAX_PHC,
    PHC_PREFIX,
    PasswordHashed,
    PasswordLogin,
    Register,
    SetPassword,
    Submit,
    password_problem,
)
from tchat.runtime.ratelimit import TokenBucket

if TYPE_CHECKING:
    from tchat.core.server import ServerNode
    from tchat.runtime.driver import NodeDriver

logger = logging.getLogger(__name__)

# RFC 9106 section 4, the second recommended option ("if much less memory is available"):
# argon2id, t=3 passes over m=64 MiB, 16-byte salt, 32-byte tag; p=1 lane, since a server
# checks logins one at a time and a lane per core would let one login take both cores.
# Measured on the 2-core test machine (under load): ~0.17 s to verify, ~0.3 s to hash.
TIME_COST = 3
MEMORY_KIB = 64 * 1024
PARALLELISM = 1
HASH_LEN = 32
SALT_LEN = 16

# Hashes at once (each holds MEMORY_KIB while it runs) and waiting behind them; past the
# queue a password is refused at once ("busy"), so a flood costs 64 MiB and one core.
CONCURRENT_HASHES = 1
QUEUED_HASHES = 8
# Online guessing: every password a host sends costs a token of that host's bucket, every
# login a token of the account's. An account takes 5 guesses in a burst, then 1 per 12 s
# (300 an hour), whoever guesses; a host 10, then 1 per 3 s, whatever it guesses (hosts
# share the one hashing thread, so together they never take more than a core).
HOST_RATE = (1 / 3, 10.0)
NAME_RATE = (1 / 12, 5.0)
# Buckets kept; the least recently used goes first (a forgotten bucket starts full again).
MAX_HOSTS = 4096
MAX_NAMES = 65_536
INSECURE = "a password travels only over an encrypted session: this server runs --insecure"


def hasher() -> PasswordHasher:
    """The one argon2id configuration tchat hashes with (a hash carries its own parameters,
    so older hashes still verify if these change)."""
    return PasswordHasher(
        time_cost=TIME_COST,
        memory_cost=MEMORY_KIB,
        parallelism=PARALLELISM,
        hash_len=HASH_LEN,
        salt_len=SALT_LEN,
        type=Type.ID,
    )


class _Buckets:
    """Token buckets by key, at most ``limit`` of them (least recently used dropped)."""

    def __init__(self, rate: tuple[float, float], limit: int) -> None:
        self.rate = rate
        self.limit = limit
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.rate[0], self.rate[1], now)
            if len(self.buckets) > self.limit:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
        return bucket


class PasswordDesk:
    """Where a server takes passwords: from a Register (a login from a new machine) or a
    SetPassword (``/password``), before its node sees either."""

    def __init__(
        self,
        node: ServerNode,
        driver: NodeDriver,
        clock: Callable[[], float],
        *,
        encrypted: bool,
    ) -> None:
        self.node = node
        self.driver = driver
        self.clock = clock
        self.encrypted = encrypted  # False: --insecure, plaintext sessions carry no password
        self.hasher = hasher()
        self.pool = ThreadPoolExecutor(CONCURRENT_HASHES, thread_name_prefix="argon2")
        self.queued = 0  # hashes running or waiting
        self.hosts = _Buckets(HOST_RATE, MAX_HOSTS)
        self.names = _Buckets(NAME_RATE, MAX_NAMES)
        self.tasks: set[asyncio.Task[None]] = set()
        # client ID -> its latest Register while its password is being checked: a client
        # resends its Register when no Welcome comes in time, and a resend must cost no
        # second hash (bounded: an entry per queued hash).
        self.checking: dict[str, Register] = {}

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- what the transport hands us --------------------------------------------------
    def takes(self, message: object) -> bool:
        """Whether ``message`` carries a password (this desk handles it, not the node)."""
        if type(message) is Register:
            return bool(message.password)
        return type(message) is Submit and type(message.op) is SetPassword

    def on_message(self, message: Register | Submit, src: str) -> None:
        if type(message) is Register:
            self._on_login(message, src)
        elif type(message) is Submit:
            self._on_set(message, src)

    # -- logins -----------------------------------------------------------------------
    def _on_login(self, msg: Register, src: str) -> None:
        node = self.node
        password = msg.password
        bare = dataclasses.replace(msg, password="")  # the core never sees a password
        state = node.state
        if (
            node.leadership is None  # the core answers NotLeader
            or msg.name not in state.claims  # a new name: its first key claims it
            or state.holds_key(msg.name, msg.identity)  # the key proof is enough
        ):
            self.driver.on_message(bare, src)
            return
        if not self.encrypted:
            self._refuse_login(bare, INSECURE, "password-insecure")
            return
        phc = state.passwords.get(msg.name)
        if phc is None:
            self._refuse_login(bare, no_password(msg.name), "password-none")
            return
        problem = password_problem(password)
        if problem:
            self._refuse_login(bare, problem, "password-malformed")
            return
        if msg.client_id in self.checking:
            self.checking[msg.client_id] = bare  # answered with the latest, once checked
            self.node.count("password-resent")
            return
        now = self.clock()
        host = src.rpartition(":")[0]
        refusal = self._admit(host, msg.name, now)
        if refusal:
            self._refuse_login(bare, refusal, "password-rate")
            return
        self.checking[msg.client_id] = bare
        self._spawn(self._check(bare, password, phc))

    async def _check(self, first: Register, password: str, phc: str) -> None:
        try:
            ok = await self._run(self._verify, phc, password)
        finally:
            latest = self.checking.pop(first.client_id, first)
        # A resend with another password or name is not what was checked.
        bare = latest if (latest.name, latest.identity) == (first.name, first.identity) else first
        if ok is True:
            self.driver.call(self.node.password_login, PasswordLogin(bare, phc), self.clock())
        else:
            self._refuse_login(bare, f"wrong password for {bare.name!r}", "password-wrong")

    def _verify(self, phc: str, password: str) -> bool:
        try:
            return self.hasher.verify(phc, password)
        except (VerificationError, InvalidHashError):
            return False

    def _refuse_login(self, bare: Register, reason: str, counter: str) -> None:
        self.driver.call(self.node.refuse_login, bare, reason, counter)

    # -- setting one ------------------------------------------------------------------
    def _on_set(self, msg: Submit, src: str) -> None:
        node = self.node
        assert type(msg.op) is SetPassword
        password = msg.op.password
        bare = dataclasses.replace(msg, op=SetPassword(""))
        leadership = node.leadership
        session = leadership.streams.sessions.get(msg.client_id) if leadership else None
        if session is None or session.addr != src or not session.active:
            # Not the leader, or not this session's: the core answers (NotLeader) or drops
            # it (foreign-session) as any Submit, and nothing is hashed for it.
            self.driver.on_message(bare, src)
            return
        if not self.encrypted:
            self.driver.call(node.refuse_operation, bare, src, INSECURE)
            return
        problem = password_problem(password)
        refusal = problem or self._admit(src.rpartition(":")[0], None, self.clock())
        if refusal:
            self.driver.call(node.refuse_operation, bare, src, refusal)
            return
        self._spawn(self._hash(msg, password, src))

    async def _hash(self, msg: Submit, password: str, src: str) -> None:
        phc = await self._run(self.hasher.hash, password)
        if not isinstance(phc, str) or len(phc) > MAX_PHC or not phc.startswith(PHC_PREFIX):
            self.driver.call(
                self.node.refuse_operation, msg, src, "the server is busy: try again later"
            )
            return
        self.driver.on_message(dataclasses.replace(msg, op=PasswordHashed(phc)), src)

    # -- the bounds -------------------------------------------------------------------
    def _admit(self, host: str, name: str | None, now: float) -> str:
        """'' if a hash may be queued now for ``host`` (and a login to ``name``), else why not.
        A token is taken from both buckets or neither."""
        if self.queued >= CONCURRENT_HASHES + QUEUED_HASHES:
            self.node.count("password-busy")
            return "the server is busy checking passwords: try again in a moment"
        by_host = self.hosts.bucket(host, now)
        by_name = self.names.bucket(name, now) if name is not None else None
        wait = max(by_host.ready_at(now), by_name.ready_at(now) if by_name else now) - now
        if wait > 0:
            who = f"for {name!r}" if by_name is not None and by_name.ready_at(now) > now else ""
            return f"too many password attempts {who or 'from this host'}: wait {wait:.0f} s"
        by_host.take(now)
        if by_name is not None:
            by_name.take(now)
        return ""

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        # Counted from now, not from when the thread takes it: many passwords in one loop
        # iteration must meet the queue's bound too.
        self.queued += 1
        task = asyncio.ensure_future(job)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.queued -= 1
        self.tasks.discard(task)

    async def _run(self, fn: Callable[..., object], *args: object) -> object:
        """``fn(*args)`` on the hashing thread (one at a time): None if it failed."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.pool, fn, *args)
        except RuntimeError:  # the pool is shut down: we are stopping
            return None
        except Exception:  # argon2 itself failed (out of memory): nothing we can vouch for
            logger.exception("argon2 failed")
            return None
