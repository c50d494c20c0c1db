"""Frozen snapshots of a client session and a server node: what a user interface shows."""

from __future__ import annotations

from dataclasses import dataclass, field

from tchat.core.messages import Entry, UserInfo
from tchat.core.vclock import VectorClock


@dataclass(frozen=True, slots=True)
class ClientStatus:
    """Read from the service once per refresh; the UI reads no node internals.

    ``state`` is the ClientState's name (``"STARTING"`` before the node exists); the leader
    and epoch are the last ones learned, for the UI to judge whether they are news.
    """

    state: str = "STARTING"
    leader_id: int | None = None
    leader_addr: str = ""
    epoch: str = ""
    pending: int = 0  # operations sent but not yet acknowledged
    rtt_ms: float | None = None  # smoothed submit -> acknowledgement time, None before one
    delivery: str = ""  # "multicast" | "unicast" | "" (not known yet)
    clock: VectorClock = field(default_factory=VectorClock)
    # (reason, count) of what this client refused since it started, by reason: the core's
    # (replayed-beat...) and its transport's (unknown-key, bad-signature...). An attack is
    # a user's or operator's business: /info shows them (issue 15).
    drops: tuple[tuple[str, int], ...] = ()

    @property
    def serving(self) -> bool:
        return self.state == "SERVING"


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One server of the ring as the local server sees it."""

    server_id: int
    addr: str
    me: bool
    leader: bool
    live_backup: bool  # in the leader's view (the leader itself knows its backups)
    heard_age: float | None  # seconds since this server last heard from it, None if never
    lag: int | None  # log entries it has not acknowledged yet (known on the leader)


@dataclass(frozen=True, slots=True)
class RoomStatus:
    name: str
    group: str
    members: tuple[str, ...]  # sorted
    messages: int | None  # None when not counted


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """A server node as the dashboard shows it, read by its service at each refresh."""

    server_id: int = 0
    role: str = "STARTING"  # the role's name: LEADER, BACKUP, CANDIDATE...
    leader_id: int | None = None
    epoch: str = ""
    peers: tuple[PeerStatus, ...] = ()  # by server ID
    peer_timeout: float = 0.5  # a peer silent longer than this shows as not live
    users: tuple[UserInfo, ...] = ()  # by name
    rooms: tuple[RoomStatus, ...] = ()  # by name
    log_size: int = 0
    clock: VectorClock = field(default_factory=VectorClock)
    recent: tuple[Entry, ...] = ()  # the latest chat entries, oldest first
