"""What a leader's state (Leadership) may use of its server, and what its ClientDesk may use
of the Leadership: Protocols, so each depends on a narrow view and not on the module that
builds it (server.py builds the Leadership, the Leadership its desk: no circle)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from tchat.core.config import ServerConfig
from tchat.core.effects import Effect, LogEvent
from tchat.core.fold import ClusterState
from tchat.core.log import ReplicatedLog
from tchat.core.messages import (
    Dot,
    Entry,
    EntryBody,
    Epoch,
    Origin,
    Register,
    ServerInfo,
    Submit,
)
from tchat.core.stream import ClientStreams
from tchat.core.vclock import VectorClock
from tchat.core.wakeup import WakeWatch


class ServerCore(Protocol):
    """The server as its leader's state sees it: identity, log, fold and peers."""

    server_id: int
    config: ServerConfig
    log: ReplicatedLog
    wake: WakeWatch
    peers: dict[int, str]

    @property
    def state(self) -> ClusterState: ...

    @property
    def servers(self) -> tuple[ServerInfo, ...]: ...

    def count(self, reason: str) -> None: ...

    def log_event(self, kind: str, text: str, **fields: object) -> LogEvent: ...

    def next_token(self) -> int: ...

    def new_state(self) -> ClusterState: ...

    def chunk(self, entries: Iterator[Entry]) -> tuple[tuple[Entry, ...], bool]: ...

    def merge_entries(self, entries: Iterable[Entry]) -> list[Entry]: ...

    def forget_peer(self, server_id: int) -> None: ...

    def fold_from_floor(self, wanted: Callable[[Entry], bool]) -> ClusterState: ...


@dataclass(slots=True)
class Pending:
    """An entry sequenced (or merged) by this leader, waiting for every live backup."""

    entry: Entry
    acks: list[tuple[str, int]]  # (client_id, cmid) to acknowledge on commit
    merged: bool = False  # brought by another server: clients get it by resuming


class LeaderCore(Protocol):
    """The Leadership as its ClientDesk sees it: the uncommitted entries, the sessions'
    streams, and the steps that sequence entries and acknowledge them."""

    epoch: Epoch
    serving: bool
    pending: deque[Pending]
    pending_dots: dict[Dot, Pending]
    waiting_registers: list[tuple[Register, str]]
    deferred: list[tuple[Submit, str, float]]
    streams: ClientStreams

    @property
    def node(self) -> ServerCore: ...

    def sequence(
        self, body: EntryBody, now: float, origin: Origin | None = None
    ) -> tuple[Entry, list[Effect]]: ...

    def next_entry(self, body: EntryBody, now: float, origin: Origin | None = None) -> Entry: ...

    def record(self, entry: Entry) -> tuple[Entry, list[Effect]]: ...

    def held(self) -> VectorClock | None: ...

    def ack_when_held(
        self, entry: Entry, client_id: str, cmid: int, held: VectorClock | None
    ) -> list[Effect]: ...

    def pull(self, src: int, addr: str, clock: VectorClock, now: float) -> list[Effect]: ...
