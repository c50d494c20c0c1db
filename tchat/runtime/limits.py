"""What a node lets in: datagram kinds, connection caps and per-source rate limits.

Longer than 400 lines: every table of what may come in (datagram kinds, the frames a
client or a server session may carry, connection caps, per-kind rates) is here, so that
one file answers "what does a stranger get to send us"; the mechanisms live elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from tchat.core.messages import (
    Ack,
    Admit,
    Append,
    AppendAck,
    Challenge,
    ClientBeat,
    ClientHeartbeat,
    ClusterStatusRequest,
    CreateRoom,
    Discover,
    DiscoverReply,
    Election,
    ElectionAck,
    Heartbeat,
    HistoryReply,
    HistoryRequest,
    InviteUser,
    JoinRequest,
    JoinRoom,
    KeysReply,
    KeysRequest,
    KickUser,
    LeaderAlive,
    LeaderSuspect,
    LeaveRoom,
    Leaving,
    LobbyBeat,
    LobbyFrame,
    Message,
    NameClash,
    NewLeader,
    NotLeader,
    OpError,
    Register,
    Rejected,
    Replay,
    Resync,
    RoomFrame,
    RoomKeyGrant,
    RoomList,
    RoomsReply,
    RoomsRequest,
    SessionFrame,
    SetAway,
    SetRoomMode,
    SetTopic,
    StaleEpoch,
    StatusReply,
    StatusRequest,
    StepDown,
    Submit,
    SyncData,
    SyncRequest,
    UserList,
    Welcome,
)
from tchat.runtime.ratelimit import LruTable, TokenBucket

logger = logging.getLogger(__name__)

# What may arrive on a node's own UDP port or on the discovery port. Everything else a
# client or server says travels on a TCP session the sender opened (so its source address
# is real and its answers go back on that session). NewLeader is here because a freshly
# elected leader has no session with the clients it announces itself to: it is taken
# only from an address the receiver knows as a server of its cluster.
NODE_DATAGRAMS: tuple[type[Message], ...] = (
    Discover,
    DiscoverReply,
    StatusRequest,
    StatusReply,
    NewLeader,
)
# What the leader multicasts to room and lobby groups.
GROUP_DATAGRAMS: tuple[type[Message], ...] = (RoomFrame, LobbyFrame, LobbyBeat)
# Requests whose answers a node sends by datagram: rate-limited per source address.
DISCOVERY_REQUESTS: tuple[type[Message], ...] = (Discover, StatusRequest)

# Who may say what on an encrypted TCP session (docs/PROTOCOL.md, "Who may send what").
# Server frames: only from a session whose peer proved a cluster certificate (the server
# we connected to, or a server that connected to us and sent its PeerAuth); from anyone
# else they are dropped and counted (``not-a-server``): a client cannot forge a NewLeader,
# a StepDown, a JoinRequest or replay a Heartbeat. These are the core's ``from_server``
# messages (tests/test_wire_security.py checks the two agree).
SERVER_FRAMES: frozenset[type[Message]] = frozenset(
    (
        # between servers: membership, replication, failure detection, elections
        JoinRequest,
        SyncRequest,
        SyncData,
        Append,
        AppendAck,
        Admit,
        Heartbeat,
        Election,
        ElectionAck,
        NewLeader,
        StepDown,
        Leaving,
        StaleEpoch,
        DiscoverReply,
        StatusReply,
        # a server's answers and streams to its clients
        Rejected,
        NotLeader,
        Replay,
        UserList,
        Welcome,
        RoomList,
        Ack,
        OpError,
        SessionFrame,
        RoomFrame,
        LobbyFrame,
        ClientHeartbeat,
        LobbyBeat,
        LeaderAlive,
        Resync,
        NameClash,
        HistoryReply,
        RoomsReply,
        KeysReply,
        Challenge,  # the login binding's nonce, sent first on a client's session
        RoomKeyGrant,  # a room's multicast key, to a member
        # a status request signed with the cluster key (an operator's, by datagram)
        ClusterStatusRequest,
    )
)
# What a client sends: from a client session, these alone.
CLIENT_FRAMES: frozenset[type[Message]] = frozenset(
    (
        Register,
        Submit,
        ClientBeat,
        LeaderSuspect,
        HistoryRequest,
        RoomsRequest,
        KeysRequest,
        StatusRequest,
        Discover,
    )
)
# Client-kind requests a server also sends another server (it probes its peers).
SERVER_REQUESTS: frozenset[type[Message]] = frozenset((Discover, StatusRequest))

HOST_TABLE = 4096  # source hosts (and addresses) remembered by a limiter, least recent out
OPEN_FILES_HEADROOM = 128  # descriptors kept for the store, the log, listeners and peers


def host_of(addr: str) -> str:
    """The IP of a "host:port" address (the whole string if it has no port)."""
    host, sep, _port = addr.rpartition(":")
    return host if sep else addr


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket's refill per second and size."""

    rate: float
    burst: float


# kind -> (per session, per source host). Generous for a person (fast typing, a pasted
# 50-line burst, a failover of every client of a host at once), tight for a flood: what
# each admits in a minute is far below what the leader can commit and replicate.
OPERATION_RATES: dict[str, tuple[Rate, Rate]] = {
    "register": (Rate(1.0, 5.0), Rate(20.0, 100.0)),
    "chat": (Rate(50.0, 200.0), Rate(200.0, 800.0)),  # per session: --rate-limit/--rate-burst
    "room": (Rate(5.0, 20.0), Rate(20.0, 100.0)),
    # A topic is a line for every member and a header redrawn: a few in a row (a typo
    # fixed), then one every 5 s, as IRC networks pace TOPIC.
    "topic": (Rate(0.2, 3.0), Rate(1.0, 10.0)),
    # Away/back: a client paces itself to one change per 5 s (core/away.py); a session
    # that does not waits here, so a flap costs the log and every user list at most one
    # entry per 5 s after a burst of 5 (behind it, only that session's own frames wait).
    "status": (Rate(0.2, 5.0), Rate(5.0, 50.0)),
    "history": (Rate(5.0, 20.0), Rate(20.0, 80.0)),
    "directory": (Rate(2.0, 10.0), Rate(10.0, 40.0)),
    "suspect": (Rate(1.0, 5.0), Rate(10.0, 50.0)),
    "beat": (Rate(5.0, 10.0), Rate(500.0, 1000.0)),
    # Noise handshakes a host may start (the per-session rate is unused: one per session).
    # Above the register rate, which every login also pays; a handshake costs the
    # responder ~0.2 ms of CPU, so a host's flood costs at most ~1% of a core plus its
    # burst, and the per-host connection cap bounds how many are half-open at once.
    "handshake": (Rate(1.0, 1.0), Rate(50.0, 200.0)),
}


def operation_kind(message: Message) -> str | None:
    """The rate-limit class of a client's frame; None for anything else (server frames)."""
    match message:
        case Submit(
            op=JoinRoom() | LeaveRoom() | CreateRoom() | SetRoomMode() | InviteUser() | KickUser()
        ):
            return "room"  # membership and ownership changes: each one a frame to members
        case Submit(op=SetTopic()):
            return "topic"
        case Submit(op=SetAway()):
            return "status"
        case Submit():
            return "chat"
        case ClientBeat():
            return "beat"
        case Register():
            return "register"
        case HistoryRequest():
            return "history"
        case RoomsRequest() | KeysRequest() | StatusRequest() | Discover():
            return "directory"
        case LeaderSuspect():
            return "suspect"
    return None


class OperationLimits:
    """Token buckets per session and per source host for each kind of client operation."""

    def __init__(self, chat: Rate, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.rates = dict(OPERATION_RATES)
        self.rates["chat"] = (chat, self.rates["chat"][1])
        self.hosts: LruTable[str, dict[str, TokenBucket]] = LruTable(HOST_TABLE, self._buckets)

    def _buckets(self, _host: str) -> dict[str, TokenBucket]:
        return {}  # made on first use: most sessions and hosts use two or three kinds

    def session_buckets(self) -> dict[str, TokenBucket]:
        return {}

    def _bucket(self, buckets: dict[str, TokenBucket], kind: str, which: int) -> TokenBucket:
        bucket = buckets.get(kind)
        if bucket is None:
            rate = self.rates[kind][which]
            bucket = buckets[kind] = TokenBucket(rate.rate, rate.burst, self.clock())
        return bucket

    def allow_host(self, host: str, kind: str, now: float) -> bool:
        """Whether ``host`` may do one more ``kind`` now (its token is taken if so)."""
        bucket = self._bucket(self.hosts.get(host), kind, 1)
        if bucket.ready_at(now) > now:
            return False
        bucket.take(now)
        return True

    def wait_for(
        self, session: dict[str, TokenBucket], host: str, kind: str, now: float
    ) -> float | None:
        """None if one ``kind`` operation may go now (its tokens are taken), else when to
        look again. A token is taken from both buckets or from neither."""
        mine = self._bucket(session, kind, 0)
        theirs = self._bucket(self.hosts.get(host), kind, 1)
        ready = max(mine.ready_at(now), theirs.ready_at(now))
        if ready > now:
            return ready
        mine.take(now)
        theirs.take(now)
        return None


class DiscoveryLimits:
    """Answers to discovery and status requests: per source address, per source IP and
    in total.

    They go by datagram to the request's source, which anyone can forge: bounded per
    source and overall, a server cannot be turned into a reflector against a victim.
    """

    HOST_FACTOR = 10  # the addresses of one IP together: many clients on one host

    def __init__(self, per_source: float, total: float, now: float) -> None:
        self._now = now
        self.total = TokenBucket(total, total * 2, now) if total > 0 else None
        self.sources: LruTable[str, TokenBucket] | None = None
        self.hosts: LruTable[str, TokenBucket] | None = None
        if per_source > 0:
            per_host = per_source * self.HOST_FACTOR
            self.sources = LruTable(
                HOST_TABLE, lambda _src: TokenBucket(per_source, per_source * 2, self._now)
            )
            self.hosts = LruTable(
                HOST_TABLE, lambda _host: TokenBucket(per_host, per_host * 2, self._now)
            )

    def allow(self, source: str, now: float) -> bool:
        """Whether to answer a request from ``source`` (its tokens are taken if so)."""
        self._now = now
        buckets = [] if self.total is None else [self.total]
        if self.sources is not None and self.hosts is not None:
            buckets += [self.sources.get(source), self.hosts.get(host_of(source))]
        if any(bucket.ready_at(now) > now for bucket in buckets):
            return False
        for bucket in buckets:
            bucket.take(now)
        return True


class DatagramPolicy:
    """Only discovery (and a new leader's announcement) travels by datagram, and room
    frames by multicast: anything else by UDP would be served without a session, with no
    source check, no rate limit, and answers opened to wherever it claimed to be from."""

    def __init__(self, discovery: DiscoveryLimits, known_server: Callable[[str], bool]) -> None:
        self.discovery = discovery
        self.known_server = known_server

    def refusal(
        self, message: Message, peer: str, channel: str, now: float
    ) -> tuple[str, str] | None:
        """None to accept the datagram, else (drop reason, detail)."""
        if channel.startswith("multicast"):
            if isinstance(message, GROUP_DATAGRAMS):
                return None
        elif isinstance(message, NODE_DATAGRAMS):
            if isinstance(message, DISCOVERY_REQUESTS):
                # The answer goes to ``addr`` by datagram: only to the datagram's own
                # source, and at a bounded rate per source (which could be forged) and
                # overall.
                addr = message.addr  # type: ignore[attr-defined]
                if addr != peer:
                    return "addr-mismatch", f"answer to {addr!r}"
                if not self.discovery.allow(peer, now):
                    return "discovery-limited", type(message).__name__
                return None
            if not isinstance(message, NewLeader):
                return None
            if message.addr == peer and self.known_server(peer):
                return None
        return "udp-refused", type(message).__name__


class ConnectionCaps:
    """Inbound connections per source host and in total; returns why one is refused."""

    def __init__(self, per_host: int, total: int) -> None:
        self.per_host = per_host
        self.total = total
        self.open = 0
        self.by_host: dict[str, int] = {}  # at most ``total`` keys: each holds a connection

    def admit(self, host: str) -> str | None:
        if self.total and self.open >= self.total:
            return "conn-cap-total"
        held = self.by_host.get(host, 0)
        if self.per_host and held >= self.per_host:
            return "conn-cap-host"
        self.by_host[host] = held + 1
        self.open += 1
        return None

    def release(self, host: str) -> None:
        held = self.by_host.get(host, 0)
        if held <= 1:
            self.by_host.pop(host, None)
        else:
            self.by_host[host] = held - 1
        self.open = max(0, self.open - 1)


def open_files_budget(wanted: int) -> int:
    """``wanted`` connections, or fewer if the open-file limit leaves no headroom for them."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return wanted
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(16, soft - max(OPEN_FILES_HEADROOM, soft // 8))
    return min(wanted, room) if wanted > 0 else room


def raise_open_files_limit() -> int:
    """Lift this process's open-file soft limit to the hard limit; returns the new soft one.

    systemd starts services with a soft limit of 1,024: a few hundred idle connections
    would then lock every new login out. The hard limit is what the admin allows.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            logger.warning("cannot raise the open-file limit from %s to %s: %s", soft, hard, exc)
    return int(soft)
