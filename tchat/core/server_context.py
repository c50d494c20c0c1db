"""What a server's Following and Candidacy may use of their node, and of each other: Protocols,
so neither imports server.py (which builds them: no circle)."""

from __future__ import annotations

from typing import Protocol

from tchat.core.effects import Effect, Persist
from tchat.core.election import LcrElection
from tchat.core.leader import Leadership
from tchat.core.messages import Epoch
from tchat.core.node_context import ServerCore
from tchat.core.roles import ServerPhase, ServerRole


class FollowingPart(Protocol):
    """What the candidacy uses of the following."""

    admitted_seq: int | None

    def follow(
        self, epoch: Epoch, leader_addr: str, now: float, ask_to_join: bool = True
    ) -> list[Effect]: ...


class CandidacyPart(Protocol):
    """What the following uses of the candidacy."""

    def take_office(self, now: float) -> list[Effect]: ...


class ServerView(ServerCore, Protocol):
    """The node as its Following and Candidacy see it. The phase is read-only here: it
    changes through become(event), on the node's own table."""

    epoch: Epoch
    max_term: int
    leader_id: int
    leader_addr: str
    leader_heard: float
    peer_heard: dict[int, float]
    election: LcrElection
    next_retry: float
    next_heartbeat: float
    next_discovery: float

    @property
    def phase(self) -> ServerPhase: ...

    @property
    def role(self) -> ServerRole: ...

    @property
    def leadership(self) -> Leadership | None: ...

    @property
    def live_backups(self) -> set[int]: ...

    @property
    def following(self) -> FollowingPart: ...

    @property
    def candidacy(self) -> CandidacyPart: ...

    def ring(self) -> list[int]: ...

    def become(self, event: str, phase: ServerPhase | None = None) -> None: ...

    def set_epoch(self, epoch: Epoch) -> Persist: ...

    def observe_term(self, term: int) -> list[Effect]: ...
