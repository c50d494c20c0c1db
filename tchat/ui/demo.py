"""A scripted, in-memory stand-in for ClientService: deterministic data for tests and screenshots.

It has the service's surface (start, stop, submit, request_history, add_listener, node) and
answers operations the way a leader would (ack, echo, join), without any network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from tchat.core import effects as ev
from tchat.core.messages import (
    Chat,
    CreateRoom,
    Dot,
    Entry,
    Epoch,
    InviteUser,
    JoinRoom,
    KickUser,
    LeaveRoom,
    Logout,
    Operation,
    Origin,
    RoomInfo,
    RoomSummary,
    SendChat,
    ServerInfo,
    SetAway,
    SetRoomMode,
    SetTopic,
    UserInfo,
)
from tchat.core.status import ClientStatus
from tchat.core.vclock import VectorClock

BASE = datetime(2026, 11, 24, 9, 0, tzinfo=UTC).timestamp()


class FakeState(Enum):
    DISCOVERING = "discovering"
    SERVING = "serving"
    RESUMING = "resuming"
    CLOSED = "closed"


class FakeClock:
    """A wall clock the script moves: the UI's timestamps stay the same on every run."""

    def __init__(self, now: float = BASE) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeNode:
    name: str
    state: FakeState = FakeState.DISCOVERING
    leader_id: int = 0
    leader_addr: str = ""
    epoch: Epoch = field(default_factory=lambda: Epoch(0, 0))
    clock: VectorClock = field(default_factory=VectorClock)
    users: dict[str, UserInfo] = field(default_factory=dict)
    rooms: dict[str, RoomInfo] = field(default_factory=dict)
    pending: dict[int, Any] = field(default_factory=dict)


class FakeClientService:
    """Echoes operations back as a single leader would; ``emit`` injects any event."""

    def __init__(
        self,
        name: str,
        clock: FakeClock | None = None,
        *,
        auto_ack: bool = True,
        rtt: float | None = 0.0004,
        multicast: bool = True,
    ) -> None:
        self.node = FakeNode(name)
        self.clock = clock or FakeClock()
        self.auto_ack = auto_ack
        self.rtt = rtt
        self.multicast = multicast
        self.listeners: list[Callable[[ev.ClientEvent], None]] = []
        self.submitted: list[tuple[int, Operation]] = []
        self.history_asked: list[tuple[int, str | None, str | None, Dot | None, int]] = []
        self.archive: dict[str, list[Entry]] = {}  # conversation key -> older entries
        self.others: dict[str, RoomSummary] = {}  # directory rooms this user is not in
        self.started = False
        self.stopped = False
        self._cmid = 0
        self._rid = 0
        self._log = VectorClock()  # the simulated leader's log clock: every entry gets a new dot
        self.drops: dict[str, int] = {}  # what the client refused, by reason (/info)

    def status(self) -> ClientStatus:
        node = self.node
        return ClientStatus(
            state=node.state.name,
            leader_id=node.leader_id,
            leader_addr=node.leader_addr,
            epoch=str(node.epoch) if node.leader_id else "",
            pending=len(node.pending),
            drops=tuple(sorted(self.drops.items())),
            rtt_ms=self.rtt * 1000 if self.rtt is not None else None,
            delivery="multicast" if self.multicast else "unicast",
            clock=node.clock,
        )

    def add_listener(self, listener: Callable[[ev.ClientEvent], None]) -> None:
        self.listeners.append(listener)

    def emit(self, event: ev.ClientEvent) -> None:
        for listener in list(self.listeners):
            listener(event)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True
        self.node.state = FakeState.CLOSED

    # -- the leader's side, simulated ---------------------------------------------------
    def serve(
        self,
        leader_id: int = 1,
        addr: str = "127.0.0.1:7001",
        term: int = 1,
        users: tuple[str, ...] = (),
        peers: tuple[str, ...] = (),
    ) -> None:
        node = self.node
        node.state = FakeState.SERVING
        node.leader_id, node.leader_addr, node.epoch = leader_id, addr, Epoch(term, leader_id)
        self.emit(ev.Ready(node.name, leader_id, addr, node.epoch, peers))
        for index, name in enumerate((node.name, *users)):
            node.users[name] = UserInfo(name, f"127.0.0.1:{6100 + index}", "online", self.clock.now)
        self.emit(ev.UsersChanged(tuple(node.users.values())))

    def entry(
        self,
        sender: str,
        text: str,
        *,
        room: str | None = None,
        to: str | None = None,
        action: bool = False,
        server: int = 1,
        seen: dict[int, int] | None = None,
        cmid: int | None = None,
        ts: float | None = None,
    ) -> Entry:
        sender_clock = VectorClock(seen) if seen is not None else self.node.clock
        clock = sender_clock.merge(self._log).increment(server)
        self._log = clock
        origin = Origin(f"client-{sender}", cmid) if cmid is not None else None
        body = Chat(sender, room, to, text, action, sender_clock)
        return Entry(
            Dot(server, clock[server]),
            clock,
            ts if ts is not None else self.clock.now,
            origin,
            body,
        )

    def deliver(self, entry: Entry) -> None:
        self.node.clock = self.node.clock.merge(entry.clock)
        self.emit(ev.ChatDelivered(entry))
        self.emit(ev.ClockAdvanced(self.node.clock))

    def say(self, sender: str, text: str, **kwargs: Any) -> Entry:
        entry = self.entry(sender, text, **kwargs)
        self.deliver(entry)
        return entry

    def enter(self, room: str, members: tuple[str, ...], topic: str = "") -> None:
        info = RoomInfo(room, f"239.255.42.{len(self.node.rooms) + 1}:47471", members, 0, topic)
        self.node.rooms[room] = info
        self.emit(ev.RoomEntered(info))

    def set_topic(self, room: str, topic: str, by: str) -> None:
        """``by`` set the topic of a room this user is in."""
        info = self.node.rooms[room]
        self.node.rooms[room] = RoomInfo(info.room, info.group, info.members, info.head, topic)
        self.emit(ev.TopicChanged(room, topic, by, self.clock.now))

    def request_rooms(self) -> int:
        """The directory: this user's rooms, then ``others``, as a leader would answer."""
        self._rid += 1
        mine = {
            name: RoomSummary(name, info.group, len(info.members), info.members, 0, 0.0, info.topic)
            for name, info in self.node.rooms.items()
        }
        rooms = tuple(sorted({**self.others, **mine}.values(), key=lambda r: r.room))
        asyncio.get_running_loop().call_soon(self.emit, ev.RoomDirectory(self._rid, rooms))
        return self._rid

    def failover(self, new_leader: int, addr: str, took: float) -> None:
        """The leader dies; after ``took`` seconds a new one is elected and serves."""
        node = self.node
        node.state = FakeState.RESUMING
        self.emit(ev.ConnectionChanged("resuming", "leader silent"))
        self.clock.now += took
        node.leader_id, node.leader_addr = new_leader, addr
        node.epoch = Epoch(node.epoch.term + 1, new_leader)
        servers = (
            ServerInfo(1, "127.0.0.1:7001"),
            ServerInfo(2, "127.0.0.1:7002"),
            ServerInfo(3, "127.0.0.1:7003"),
        )
        self.emit(ev.LeaderLearned(new_leader, addr, node.epoch, servers))
        node.state = FakeState.SERVING
        self.emit(ev.ConnectionChanged("serving", "resumed"))

    # -- the service surface ----------------------------------------------------------
    def submit(self, op: Operation) -> int:
        self._cmid += 1
        cmid = self._cmid
        self.submitted.append((cmid, op))
        self.node.pending[cmid] = op
        if self.auto_ack:
            asyncio.get_running_loop().call_soon(self.acknowledge, cmid)
        return cmid

    def acknowledge(self, cmid: int) -> None:
        op = self.node.pending.pop(cmid, None)
        if op is None:
            return
        me = self.node.name
        match op:
            case SendChat(room=room, to=to, text=text, action=action):
                entry = self.entry(me, text, room=room, to=to, action=action, cmid=cmid)
                self.emit(ev.Sent(cmid, entry.id))
                self.deliver(entry)
            case JoinRoom(room=room) | CreateRoom(room=room):
                members = tuple(
                    sorted({*self.node.rooms.get(room, RoomInfo(room, "", (), 0)).members, me})
                )
                self.emit(ev.Sent(cmid, f"j{cmid}"))
                self.enter(room, members)
            case LeaveRoom(room=room):
                self.emit(ev.Sent(cmid, f"l{cmid}"))
                self.node.rooms.pop(room, None)
                self.emit(ev.RoomExited(room))
            case SetTopic(room=room, topic=topic):
                self.emit(ev.Sent(cmid, f"t{cmid}"))
                self.set_topic(room, topic, me)
            case SetAway(away=away, away_reason=reason):
                user = self.node.users[me]
                self.node.users[me] = UserInfo(
                    me, user.addr, "away" if away else "online", self.clock.now, reason
                )
                self.emit(ev.Sent(cmid, f"a{cmid}"))
                self.emit(ev.UsersChanged(tuple(self.node.users.values())))
            case Logout():
                self.emit(ev.Sent(cmid, f"o{cmid}"))
            case SetRoomMode() | InviteUser():
                self.emit(ev.Sent(cmid, f"m{cmid}"))
            case KickUser(room=room, name=name):
                self.emit(ev.Sent(cmid, f"k{cmid}"))
                info = self.node.rooms.get(room)
                if info is not None:
                    members = tuple(m for m in info.members if m != name)
                    self.node.rooms[room] = RoomInfo(room, info.group, members, info.head)
                    self.emit(ev.MembersChanged(room, members))

    def request_history(
        self, room: str | None, peer: str | None, before: Dot | None, limit: int
    ) -> int:
        self._rid += 1
        rid = self._rid
        self.history_asked.append((rid, room, peer, before, limit))
        key = f"#{room}" if room is not None else f"@{peer}"
        older = self.archive.get(key, [])
        if before is not None:
            older = [e for e in older if e.dot < before]
        page = tuple(older[-limit:])
        self.archive[key] = [e for e in self.archive.get(key, []) if e not in page]
        asyncio.get_running_loop().call_soon(self.emit, ev.HistoryLoaded(rid, page))
        return rid


def populate(service: FakeClientService) -> None:
    """The demo: a morning on a three-server cluster, with a failover. Same on every run."""
    clock = service.clock
    me = service.node.name
    service.serve(users=("alice", "bob", "carol", "dave"))
    service.enter("general", (me, "alice", "bob", "carol"))
    service.enter("ops", (me, "dave", "alice"))
    lines = [
        ("alice", "general", "morning all! coffee machine on floor 2 is fixed", {1: 0}, 1),
        ("bob", "general", "finally. who broke it last week?", {1: 1}, 1),
        ("carol", "general", f"not me :) {me}, did you see the deploy notes?", {1: 2}, 1),
        ("dave", "ops", "leader 1 is due for a kernel update at 09:20", {1: 3}, 1),
        ("alice", "ops", "ack, backups look healthy", {1: 4}, 1),
    ]
    for sender, room, text, seen, server in lines:
        clock.now += 47
        service.say(sender, text, room=room, seen=seen, server=server)
    clock.now += 30
    service.say(
        "bob",
        "[bold]markup[/bold] and \x1b]0;evil\x07 escapes stay inert \u202edesrever",
        room="general",
        seen={1: 5},
    )
    clock.now += 600
    service.failover(2, "127.0.0.1:7002", 0.412)
    clock.now += 20
    # Two messages sent during the failover, neither having seen the other: concurrent.
    service.say("alice", "did we just lose the leader?", room="general", seen={1: 6}, server=2)
    service.say("carol", "yes, server 2 took over in 0.4 s", room="general", seen={1: 6}, server=2)
    clock.now += 15
    service.say(
        "dave", "kernel update done; 1 rejoins as a backup", room="ops", seen={1: 6, 2: 2}, server=2
    )
    service.say("alice", "lunch at noon?", to=me, seen={1: 6, 2: 3}, server=2)
    dave = service.node.users["dave"]
    service.node.users["dave"] = UserInfo("dave", dave.addr, "away", clock.now, "patching server 1")
    service.emit(ev.UsersChanged(tuple(service.node.users.values())))
