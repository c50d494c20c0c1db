"""What the core asks its driver to do, and what it tells the user: one dataclass each."""

from __future__ import annotations

from dataclasses import dataclass, field

from tchat.core.messages import (
    Entry,
    Epoch,
    Message,
    RoomInfo,
    RoomSummary,
    ServerInfo,
    UserInfo,
)
from tchat.core.vclock import VectorClock


class Effect:
    """Base of every effect returned by ``handle``, ``tick`` and the commands."""

    __slots__ = ()


# I/O ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send(Effect):
    """Unicast to the node at ``addr`` ("host:port"), over its session if one is open."""

    addr: str
    message: Message


@dataclass(frozen=True, slots=True)
class Broadcast(Effect):
    """UDP broadcast on the discovery port."""

    message: Message


@dataclass(frozen=True, slots=True)
class Multicast(Effect):
    """One datagram to a room's multicast group ("ip:port")."""

    group: str
    message: Message


@dataclass(frozen=True, slots=True)
class JoinGroup(Effect):
    group: str


@dataclass(frozen=True, slots=True)
class LeaveGroup(Effect):
    group: str


@dataclass(frozen=True, slots=True)
class Persist(Effect):
    """Make these durable before carrying out any later Send of the same step."""

    entries: tuple[Entry, ...] = ()
    meta: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class LeaderChanged(Effect):
    leader_id: int
    addr: str
    epoch: Epoch


@dataclass(frozen=True, slots=True)
class LogEvent(Effect):
    """Something an operator or the Elections tab wants to see."""

    kind: str
    text: str
    fields: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class Stopped(Effect):
    """A graceful stop finished: the driver may exit."""

    reason: str = "stopped"


@dataclass(frozen=True, slots=True)
class Deliver(Effect):
    """An event for the user of a client node (UI or headless client)."""

    event: ClientEvent


# client events -----------------------------------------------------------------------
class ClientEvent:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Ready(ClientEvent):
    name: str
    leader_id: int
    leader_addr: str
    epoch: Epoch
    # The account's private conversations the servers keep, most recent first: a UI
    # reopens them (a quiet one too), without counting them unread.
    peers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UsersChanged(ClientEvent):
    users: tuple[UserInfo, ...]  # every online user, in no particular order


@dataclass(frozen=True, slots=True)
class RoomEntered(ClientEvent):
    info: RoomInfo


@dataclass(frozen=True, slots=True)
class RoomExited(ClientEvent):
    room: str
    by: str = ""  # the room's owner, who kicked us ('' when we left or went offline)


@dataclass(frozen=True, slots=True)
class MembersChanged(ClientEvent):
    room: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TopicChanged(ClientEvent):
    """``by`` set ``room``'s topic at ``ts`` ("" cleared it); the room's RoomInfo has it too.
    ``by`` "" and ``ts`` 0: it changed while this client was away (learned on resuming)."""

    room: str
    topic: str
    by: str
    ts: float


@dataclass(frozen=True, slots=True)
class ChatDelivered(ClientEvent):
    """A chat message, delivered exactly once and in causal order."""

    entry: Entry


@dataclass(frozen=True, slots=True)
class Sent(ClientEvent):
    """The leader durably stored operation ``cmid`` as entry ``entry_id``."""

    cmid: int
    entry_id: str


@dataclass(frozen=True, slots=True)
class OpFailed(ClientEvent):
    cmid: int
    reason: str


@dataclass(frozen=True, slots=True)
class LeaderLearned(ClientEvent):
    leader_id: int
    leader_addr: str
    epoch: Epoch
    servers: tuple[ServerInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class ConnectionChanged(ClientEvent):
    """``state`` is one of the ClientState values; ``detail`` says why."""

    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DiscoveryHint(ClientEvent):
    """No server answered discovery for ``waited`` seconds: what was tried, what to check.

    The runtime delivers it (it alone knows the addresses and the clock); the core never
    does. ``tried`` lists the ``host:port`` destinations of the Discover datagrams.
    """

    waited: float
    addr: str
    broadcast: str
    tried: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class ClusterOffer:
    """One cluster that answered discovery: its key's fingerprint, servers and leader."""

    fingerprint: str
    servers: tuple[str, ...]
    leader_addr: str
    epoch: str


@dataclass(frozen=True, slots=True)
class ClusterChoiceNeeded(ClientEvent):
    """More than one cluster answered a client that pinned none: the user must choose.

    The runtime delivers it (it alone verifies the signed replies); ``text`` lists the
    clusters and says how to pick one (``--cluster FINGERPRINT``).
    """

    offers: tuple[ClusterOffer, ...]
    text: str


@dataclass(frozen=True, slots=True)
class ClusterPinned(ClientEvent):
    """The client pinned a cluster key on first use: shown, so the user can check it."""

    fingerprint: str
    text: str


@dataclass(frozen=True, slots=True)
class Renamed(ClientEvent):
    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True)
class HistoryLoaded(ClientEvent):
    request_id: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class RoomDirectory(ClientEvent):
    """Every room of the cluster (answer to ``ClientNode.request_rooms``)."""

    request_id: int
    rooms: tuple[RoomSummary, ...]


@dataclass(frozen=True, slots=True)
class KeysListed(ClientEvent):
    """The account's keys, the claim's first (answer to ``ClientNode.request_keys``);
    ``yours`` is the position of this session's."""

    request_id: int
    keys: tuple[bytes, ...]
    yours: int


@dataclass(frozen=True, slots=True)
class Failed(ClientEvent):
    """Registration refused for good (invalid name...)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ClockAdvanced(ClientEvent):
    clock: VectorClock


# durable state -----------------------------------------------------------------------
@dataclass(slots=True)
class DurableState:
    """What a server finds in its store when it (re)starts."""

    entries: list[Entry] = field(default_factory=list)
    meta: dict[str, int] = field(default_factory=dict)

    def apply(self, effect: Persist) -> None:
        self.entries.extend(effect.entries)
        self.meta.update(effect.meta)
