"""``tchat bench failover``: SIGKILL the leader under a steady stream, N times; time and losses."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from tchat.bench.cluster import Cluster
from tchat.bench.nodelog import day_seconds, read_events, since
from tchat.bench.stats import summarize_ms
from tchat.bench.tchat_driver import LOGOUT_WAIT
from tchat.core.effects import ChatDelivered, Ready, RoomEntered, Sent
from tchat.core.messages import Chat, JoinRoom, SendChat
from tchat.runtime import eventloop
from tchat.runtime.client_service import ClientService

logger = logging.getLogger(__name__)

ROOM = "failover"


@dataclass(slots=True)
class Member:
    index: int
    service: ClientService
    ready: asyncio.Future[None]
    entered: asyncio.Future[None]
    counts: dict[int, int] = field(default_factory=dict)  # message k -> receipts


class Stream:
    """Members of one room; two of them send k = 0, 1, 2... at a steady pace."""

    def __init__(self) -> None:
        self.members: list[Member] = []
        self.submitted: dict[int, float] = {}  # k -> monotonic time of submit
        self.acked: set[int] = set()
        self.cmids: dict[tuple[int, int], int] = {}  # (member, cmid) -> k
        self.watch: tuple[int, float, asyncio.Future[float]] | None = None  # (old leader,...)

    def on_event(self, member: Member, event: Any) -> None:
        if isinstance(event, ChatDelivered):
            body = event.entry.body
            if not isinstance(body, Chat) or body.room != ROOM:
                return
            try:
                k = int(body.text.split(" ", 1)[0])
            except ValueError:
                return
            member.counts[k] = member.counts.get(k, 0) + 1
            watch = self.watch
            if watch is not None and event.entry.dot.server != watch[0]:
                now = time.monotonic()
                if now > watch[1] and not watch[2].done():
                    watch[2].set_result(now)
        elif isinstance(event, Sent):
            key = (member.index, event.cmid)
            if key in self.cmids:
                self.acked.add(self.cmids.pop(key))
        elif isinstance(event, Ready) and not member.ready.done():
            member.ready.set_result(None)
        elif (
            isinstance(event, RoomEntered) and event.info.room == ROOM and not member.entered.done()
        ):
            member.entered.set_result(None)

    async def add(self, cluster: Cluster, index: int) -> None:
        loop = asyncio.get_running_loop()
        service = ClientService(cluster.net_options(), f"f{index}")
        member = Member(index, service, loop.create_future(), loop.create_future())
        service.add_listener(functools.partial(self.on_event, member))
        self.members.append(member)
        await service.start()
        await asyncio.wait_for(member.ready, 30)
        service.submit(JoinRoom(ROOM))
        await asyncio.wait_for(member.entered, 30)

    async def send_forever(self, rate: float, senders: int, stop: asyncio.Event) -> None:
        interval = 1.0 / (rate * senders)
        start = time.monotonic()
        k = 0
        while not stop.is_set() and k < 10_000_000:
            member = self.members[k % senders]
            cmid = member.service.submit(SendChat(ROOM, None, f"{k} x", False))
            self.cmids[(member.index, cmid)] = k
            self.submitted[k] = time.monotonic()
            k += 1
            await asyncio.sleep(max(0.0, start + k * interval - time.monotonic()))


def _first(events: list[Any]) -> dict[str, float]:
    first: dict[str, float] = {}
    for ev in sorted(events, key=lambda e: e.at):
        first.setdefault(ev.kind, ev.at)
    return first


async def failover(
    trials: int,
    servers: int,
    clients: int,
    rate: float,
    stock_asyncio: bool,
    insecure: bool = False,
) -> dict[str, Any]:
    detect: list[float] = []
    elect: list[float] = []
    visible: list[float] = []
    failed_trials = 0
    stream = Stream()
    stop = asyncio.Event()
    cluster = Cluster(servers, stock_asyncio=stock_asyncio, log_level="INFO", insecure=insecure)
    try:
        cluster.start()
        leader = await cluster.wait_stable(60)
        for i in range(clients):
            await stream.add(cluster, i)
        sender = asyncio.create_task(stream.send_forever(rate, min(2, clients), stop))
        for _ in range(trials):
            await asyncio.sleep(0.3)  # steady flow before the kill
            offsets = {sid: d.log_path.stat().st_size for sid, d in cluster.daemons.items()}
            wall = time.time()
            seen: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            killed_at = time.monotonic()
            stream.watch = (leader, killed_at, seen)
            cluster.kill(leader)
            try:
                visible.append(await asyncio.wait_for(seen, 15) - killed_at)
            except TimeoutError:
                failed_trials += 1
            stream.watch = None
            new = await cluster.wait_stable(30, live=servers - 1)
            events = []
            for sid, d in cluster.daemons.items():
                if sid != leader:
                    events += read_events(d.log_path, sid, offsets[sid])[0]
            first = _first(events)
            kill_at = day_seconds(wall)
            if "leader-suspected" in first:
                detect.append(since(first["leader-suspected"], kill_at))
            if "election-started" in first and "new-leader" in first:
                elect.append(since(first["new-leader"], first["election-started"]))
            cluster.launch(leader)
            leader = await cluster.wait_stable(30, live=servers)
            if leader != new:
                logger.info("leadership moved back to %s after the restart", leader)
        stop.set()
        await sender
        # Drain: every submitted message acknowledged and delivered everywhere, bounded.
        deadline = time.monotonic() + 20
        want = set(stream.submitted)
        while time.monotonic() < deadline:
            if want <= stream.acked and all(
                all(k in m.counts for k in want) for m in stream.members
            ):
                break
            await asyncio.sleep(0.05)
        lost_acked = sum(1 for m in stream.members for k in stream.acked if m.counts.get(k, 0) == 0)
        dup = sum(c - 1 for m in stream.members for c in m.counts.values() if c > 1)
        unacked = len(want - stream.acked)
        for m in stream.members:
            await m.service.stop(LOGOUT_WAIT)
    finally:
        cluster.cleanup()
    return {
        "bench": "failover",
        "loop": "asyncio" if stock_asyncio else "uvloop",
        "sessions": "plaintext (--insecure)" if insecure else "noise",
        "servers": servers,
        "clients": clients,
        "stream_msgs_per_s": rate * min(2, clients),
        "trials": trials,
        "trials_without_visible_recovery": failed_trials,
        "detection": summarize_ms(detect),
        "election": summarize_ms(elect),
        "client_visible_failover": summarize_ms(visible),
        "messages": len(stream.submitted),
        "acked": len(stream.acked),
        "unacked_at_end": unacked,
        "lost_acked": lost_acked,
        "duplicated": dup,
        "ok": lost_acked == 0 and dup == 0 and failed_trials == 0,
    }


def run(args: Any) -> dict[str, Any]:
    return eventloop.run(
        failover(
            args.trials,
            args.servers,
            args.clients,
            args.rate,
            args.asyncio,
            bool(getattr(args, "insecure", False)),
        )
    )
