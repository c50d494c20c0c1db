"""A tiny deterministic in-memory bus wiring core nodes with no network (for core tests)."""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tchat.core import codec
from tchat.core.client import ClientNode
from tchat.core.config import ClientConfig, ServerConfig
from tchat.core.effects import (
    Broadcast,
    Deliver,
    DurableState,
    Effect,
    JoinGroup,
    LeaveGroup,
    LogEvent,
    Multicast,
    OpFailed,
    Persist,
    Send,
    Sent,
)
from tchat.core.messages import Message, Operation
from tchat.core.server import ServerNode

Node = ServerNode | ClientNode


def key_for(seed: str) -> bytes:
    """A 32-byte stand-in public key: the core never verifies (the runtime does)."""
    return hashlib.sha256(f"identity {seed}".encode()).digest()


@dataclass
class Bus:
    """Delivers effects between nodes after a small seeded delay; crashes and cuts links."""

    seed: int = 0
    now: float = 0.0
    rng: random.Random = field(init=False)
    nodes: dict[str, Node] = field(default_factory=dict)
    durable: dict[str, DurableState] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)
    events: dict[str, list[object]] = field(default_factory=dict)
    cut: set[frozenset[str]] = field(default_factory=set)
    sent: list[tuple[str, str, Message]] = field(default_factory=list)
    drop: Callable[[str, str, Message], bool] | None = None  # True: lose this one
    paused: set[str] = field(default_factory=set)  # nodes that neither tick nor read
    # True: every message crosses the real codec and its cap, as on the wire; a frame over
    # MAX_FRAME is dropped (the transport refuses to send it) and recorded in ``oversized``
    wire: bool = False
    oversized: list[tuple[str, str, str, int]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)  # (node, LogEvent kind)
    _held: list[tuple[str, str, Message]] = field(default_factory=list)  # unread by paused
    _queue: list[tuple[float, int, str, str, Message]] = field(default_factory=list)
    _seq: int = 0
    _link_clear: dict[tuple[str, str], float] = field(default_factory=dict)

    def split(self, a: list[str], b: list[str]) -> None:
        """Cut every link between the addresses of ``a`` and those of ``b`` (a partition)."""
        for x in a:
            for y in b:
                self.cut.add(frozenset((x, y)))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def add_server(self, server_id: int, **config: object) -> ServerNode:
        addr = f"s{server_id}"
        durable = self.durable.setdefault(addr, DurableState())
        # A small hot window: most reads of the log go to its archive, as on a long-lived server.
        config.setdefault("hot_entries", 16)
        config.setdefault("fold_snapshot_every", 24)
        node = ServerNode(ServerConfig(server_id, addr, **config), durable)  # type: ignore[arg-type]
        self.nodes[addr] = node
        self._apply(addr, node.start(self.now))
        return node

    def add_client(self, name: str, client_id: str = "", **config: object) -> ClientNode:
        addr = f"c-{name}-{len(self.nodes)}"
        client_id = client_id or addr
        # A name's owner has one key (a later login of the name is the same person) unless
        # a test gives another: a stranger asking for the name.
        config.setdefault("identity", key_for(name))
        node = ClientNode(ClientConfig(name, client_id, addr, **config))  # type: ignore[arg-type]
        self.nodes[addr] = node
        self.events[addr] = []
        self._apply(addr, node.start(self.now))
        return node

    def crash(self, addr: str) -> None:
        self.nodes.pop(addr, None)
        for members in self.groups.values():
            members.discard(addr)

    def submit(self, client: ClientNode, op: Operation) -> int:
        cmid, effects = client.submit(op, self.now, self.now)
        self._apply(client.config.addr, effects)
        return cmid

    def _apply(self, src: str, effects: list[Effect]) -> None:
        for effect in effects:
            match effect:
                case Send(addr=addr, message=message):
                    self._post(src, addr, message)
                case Broadcast(message=message):
                    for addr in sorted(self.nodes):
                        if addr != src:
                            self._post(src, addr, message)
                case Multicast(group=group, message=message):
                    for addr in sorted(self.groups.get(group, ())):
                        self._post(src, addr, message)
                case JoinGroup(group=group):
                    self.groups.setdefault(group, set()).add(src)
                case LeaveGroup(group=group):
                    self.groups.get(group, set()).discard(src)
                case Persist():
                    self.durable[src].apply(effect)
                case Deliver(event=event):
                    self.events[src].append(event)
                case LogEvent(kind=kind):
                    self.logs.append((src, kind))

    def _post(self, src: str, dst: str, message: Message) -> None:
        if frozenset((src, dst)) in self.cut:
            return
        if self.drop is not None and self.drop(src, dst, message):
            return
        if self.wire:
            data = codec.encode(message)
            if len(data) > codec.MAX_FRAME:
                self.oversized.append((src, dst, type(message).__name__, len(data)))
                return
            message = codec.decode(data)
        self.sent.append((src, dst, message))
        self._seq += 1
        delay = 0.0005 + self.rng.random() * 0.002
        # FIFO per link, like a TCP session.
        when = max(self.now + delay, self._link_clear.get((src, dst), 0.0))
        self._link_clear[(src, dst)] = when
        heapq.heappush(self._queue, (when, self._seq, src, dst, message))

    def step(self) -> bool:
        deadlines = [
            (d, addr)
            for addr, n in sorted(self.nodes.items())
            if addr not in self.paused and (d := n.next_deadline()) is not None
        ]
        next_timer = min(deadlines) if deadlines else None
        if self._queue and (next_timer is None or self._queue[0][0] <= next_timer[0]):
            when, _, src, dst, message = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            node = self.nodes.get(dst)
            if dst in self.paused:
                self._held.append((src, dst, message))
            elif node is not None and frozenset((src, dst)) not in self.cut:
                self._apply(dst, node.handle(message, src, self.now))
            return True
        if next_timer is None:
            return False
        self.now = max(self.now, next_timer[0])
        addr = next_timer[1]
        self._apply(addr, self.nodes[addr].tick(self.now))
        return True

    def resume(self, addr: str) -> None:
        """A paused node wakes up as an event loop does after a stall: its overdue timer
        runs first, then it reads what arrived meanwhile."""
        self.paused.discard(addr)
        node = self.nodes[addr]
        due = node.next_deadline()
        if due is not None and due <= self.now:
            self._apply(addr, node.tick(self.now))
        held, self._held = (
            [m for m in self._held if m[1] == addr],
            [m for m in self._held if m[1] != addr],
        )
        for src, dst, message in held:
            self._seq += 1
            heapq.heappush(self._queue, (self.now, self._seq, src, dst, message))

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        for _ in range(2_000_000):
            if not self.step() or self.now >= end:
                return
        raise AssertionError("bus did not reach the end time")

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        end = self.now + timeout
        for _ in range(2_000_000):
            if predicate():
                return
            if not self.step() or self.now >= end:
                break
        assert predicate(), f"condition not met within {timeout}s of simulated time"


def answer(bus: Bus, client: ClientNode, op: Operation) -> str:
    """Submit ``op`` and wait for the leader's answer: '' when recorded, else the reason."""
    cmid = bus.submit(client, op)
    found: list[str] = []

    def answered() -> bool:
        for event in bus.events[client.config.addr]:
            if isinstance(event, Sent) and event.cmid == cmid:
                found.append("")
                return True
            if isinstance(event, OpFailed) and event.cmid == cmid:
                found.append(event.reason)
                return True
        return False

    bus.run_until(answered, 2)
    return found[0]
