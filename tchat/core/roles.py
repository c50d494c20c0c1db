"""Server phases (a role plus the data only that role has), their legal transitions, and
the discovery cadence."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from tchat.core.leader import Leadership


class ServerRole(Enum):
    JOINING = "joining"  # looking for the leader, or catching up with it
    BACKUP = "backup"  # admitted by the leader: stores and acknowledges its batches
    CANDIDATE = "candidate"  # taking part in an election round
    SYNCING = "syncing"  # elected: pulling what the others have before announcing
    LEADER = "leader"
    STOPPED = "stopped"


_J, _B, _C, _S, _L = (
    ServerRole.JOINING,
    ServerRole.BACKUP,
    ServerRole.CANDIDATE,
    ServerRole.SYNCING,
    ServerRole.LEADER,
)
# event -> (the role it leads to, the roles it may happen in). The one place a server's
# role changes: ServerNode.become looks the (role, event) pair up in TRANSITIONS below.
_EDGES: dict[str, tuple[ServerRole, frozenset[ServerRole]]] = {
    "follow": (_J, frozenset({_J, _B, _C, _S, _L})),  # a newer epoch's leader is known
    "step-down": (_J, frozenset({_J, _B, _C, _S, _L})),  # we hand leadership over
    "heartbeat": (_J, frozenset({_J, _B, _C, _S, _L})),  # our leader beats, not admitted
    "heartbeat-admitted": (_B, frozenset({_J, _C})),  # our leader beats, admitted
    "admitted": (_B, frozenset({_J, _C})),  # the leader's Admit completed
    "start-election": (_C, frozenset({_J, _B, _C, _S})),
    "election-token": (_C, frozenset({_J, _B, _C, _S})),  # we carry someone's token
    "elected": (_S, frozenset({_J, _B, _C, _S, _L})),  # our token came back (or renewal)
    "synced": (_L, frozenset({_S})),  # every sync answer is in (or the wait timed out)
    "stop": (ServerRole.STOPPED, frozenset({_J, _B, _C, _S, _L})),
}

# (role, event) -> next role; a pair not here is an illegal transition.
TRANSITIONS: dict[tuple[ServerRole, str], ServerRole] = {
    (role, event): target
    for event, (target, sources) in _EDGES.items()
    for role in sorted(sources, key=lambda r: r.value)
}
SERVER_EVENTS = tuple(_EDGES)


@dataclass(frozen=True)
class Joining:
    role: ClassVar[ServerRole] = ServerRole.JOINING


@dataclass(frozen=True)
class Backup:
    role: ClassVar[ServerRole] = ServerRole.BACKUP


@dataclass(frozen=True)
class Candidate:
    role: ClassVar[ServerRole] = ServerRole.CANDIDATE


@dataclass
class Syncing:
    """Elected: pulling what the others have before announcing."""

    deadline: float  # take office by then, answers or not
    waiting: dict[int, int] = field(default_factory=dict)  # peer -> token of our request
    role: ClassVar[ServerRole] = ServerRole.SYNCING


@dataclass
class Leading:
    leadership: Leadership
    role: ClassVar[ServerRole] = ServerRole.LEADER


@dataclass(frozen=True)
class Stopped:
    role: ClassVar[ServerRole] = ServerRole.STOPPED


ServerPhase = Joining | Backup | Candidate | Syncing | Leading | Stopped

# The phases that carry no data: a transition to one of them needs nothing but the event.
BARE_PHASES: dict[ServerRole, ServerPhase] = {
    p.role: p for p in (Joining(), Backup(), Candidate(), Stopped())
}

DISCOVERY_INTERVAL = 1.0  # a leader looks for other partitions' leaders this often
