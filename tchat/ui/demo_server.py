"""A scripted stand-in for ServerService: a fixed three-server ring for dashboard tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from tchat.core.effects import Effect, LeaderChanged, LogEvent
from tchat.core.messages import Chat, Dot, Entry, Epoch, ServerInfo, UserInfo
from tchat.core.status import PeerStatus, RoomStatus, ServerStatus
from tchat.core.vclock import VectorClock
from tchat.ui.demo import BASE


class FakeRole(Enum):
    BACKUP = "backup"
    LEADER = "leader"


@dataclass
class FakeLog:
    items: list[Entry] = field(default_factory=list)
    clock: VectorClock = field(default_factory=VectorClock)

    def entries(self) -> list[Entry]:
        return list(self.items)

    def window(self) -> list[Entry]:
        return list(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class FakeFold:
    users: dict[str, UserInfo] = field(default_factory=dict)
    rooms: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)


@dataclass
class FakeServerNode:
    server_id: int = 2
    role: FakeRole = FakeRole.LEADER
    epoch: Epoch = field(default_factory=lambda: Epoch(2, 2))
    leader_id: int = 2
    servers: tuple[ServerInfo, ...] = ()
    live_backups: set[int] = field(default_factory=set)
    log: FakeLog = field(default_factory=FakeLog)
    state: FakeFold = field(default_factory=FakeFold)
    lag: dict[int, int] = field(default_factory=dict)


class FakeServerService:
    def __init__(self) -> None:
        self.node = FakeServerNode()
        self.listeners: list[Callable[[Effect], None]] = []
        self.stopped = False
        self.stepped_down = False

    def status(self) -> ServerStatus:
        node = self.node
        return ServerStatus(
            server_id=node.server_id,
            role=node.role.name,
            leader_id=node.leader_id,
            epoch=str(node.epoch),
            peers=tuple(
                PeerStatus(
                    server_id=s.server_id,
                    addr=s.addr,
                    me=s.server_id == node.server_id,
                    leader=s.server_id == node.leader_id,
                    live_backup=s.server_id in node.live_backups,
                    heard_age=None,
                    lag=node.lag.get(s.server_id),
                )
                for s in sorted(node.servers, key=lambda s: s.server_id)
            ),
            users=tuple(user for _, user in sorted(node.state.users.items())),
            rooms=tuple(
                RoomStatus(name, group, tuple(sorted(members)), None)
                for name, (group, members) in sorted(node.state.rooms.items())
            ),
            log_size=len(node.log),
            clock=node.log.clock,
            recent=tuple(e for e in node.log.items if isinstance(e.body, Chat))[-40:],
        )

    def add_listener(self, listener: Callable[[Effect], None]) -> None:
        self.listeners.append(listener)

    def emit(self, effect: Effect) -> None:
        for listener in list(self.listeners):
            listener(effect)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    def step_down(self) -> bool:
        self.stepped_down = True
        self.node.role = FakeRole.BACKUP
        return True


def populate_server(service: FakeServerService) -> None:
    node = service.node
    node.servers = tuple(ServerInfo(i, f"127.0.0.1:700{i}") for i in (1, 2, 3))
    node.live_backups = {3}
    node.lag = {3: 0, 1: 14}
    node.state.users = {
        name: UserInfo(
            name,
            f"127.0.0.1:61{index:02d}",
            "away" if name == "dave" else "online",
            BASE + 60 * index,
        )
        for index, name in enumerate(("alice", "bob", "carol", "dave"))
    }
    node.state.rooms = {
        "general": ("239.255.42.1:47471", ("alice", "bob", "carol")),
        "ops": ("239.255.42.2:47471", ("alice", "dave")),
    }
    clock = VectorClock()
    for counter, (sender, text, seen) in enumerate(
        [
            ("alice", "morning", {1: 0}),
            ("bob", "hi", {1: 1}),
            ("carol", "hey", {1: 1}),
            ("alice", "new leader?", {1: 3}),
        ],
        start=1,
    ):
        server = 1 if counter < 4 else 2
        clock = clock.increment(server)
        body = Chat(sender, "general", None, text, False, VectorClock(seen))
        node.log.items.append(Entry(Dot(server, clock[server]), clock, BASE + counter, None, body))
    node.log.clock = clock
    service.emit(LogEvent("suspect", "leader 1 silent for 260 ms: starting an election"))
    service.emit(LogEvent("election", "LCR round 2: token 3 -> 1 -> 2; elected 2"))
    service.emit(LeaderChanged(2, "127.0.0.1:7002", Epoch(2, 2)))
    service.emit(LogEvent("sync", "synced 3 entries from backups in 12 ms; serving"))
