"""Loopback tests of the runtime's transports, discovery, multicast and driver (no core nodes)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random
import socket
import struct

import pytest
import uvloop

from tchat.core import codec
from tchat.core.effects import Persist, Send
from tchat.core.messages import (
    NO_EPOCH,
    PROTOCOL_VERSION,
    DiscoverReply,
    Heartbeat,
    LobbyBeat,
    SendChat,
    StatusRequest,
    Submit,
)
from tchat.core.vclock import VectorClock
from tchat.runtime import discovery, multicast
from tchat.runtime.connection import ADMISSION_MAX_WAIT
from tchat.runtime.discovery import DiscoveryListener
from tchat.runtime.driver import NodeDriver
from tchat.runtime.multicast import MulticastGroups
from tchat.runtime.options import NetOptions
from tchat.runtime.server_service import ADMIT_BACKLOG, AdmissionGate
from tchat.runtime.transport import HELLO, Transport

TIMEOUT = 3.0


def on_uvloop(test):  # type: ignore[no-untyped-def]
    """Run an async test on uvloop, like the product (pytest-asyncio would use asyncio's loop)."""

    @functools.wraps(test)
    def run(*args, **kwargs):  # type: ignore[no-untyped-def]
        return uvloop.run(test(*args, **kwargs))

    return run


def options(**kw: object) -> NetOptions:
    base = NetOptions(host="127.0.0.1", discovery_port=random.randrange(20000, 40000))
    return dataclasses.replace(base, **kw)


class Inbox:
    """Collects (message, src) pairs and lets a test wait for a count with a deadline."""

    def __init__(self) -> None:
        self.items: list[tuple[object, str]] = []
        self.changed = asyncio.Event()

    def __call__(self, message: object, src: str) -> None:
        self.items.append((message, src))
        self.changed.set()

    async def wait(self, count: int, timeout: float = TIMEOUT) -> list[tuple[object, str]]:
        async with asyncio.timeout(timeout):
            while len(self.items) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.items


async def wait_until(predicate, timeout: float = TIMEOUT) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def pair():  # type: ignore[no-untyped-def]
    opts = options()
    inbox_a, inbox_b = Inbox(), Inbox()
    a, b = Transport(opts, inbox_a), Transport(opts, inbox_b, rate_limited=True)
    await a.start()
    await b.start()
    try:
        yield a, inbox_a, b, inbox_b
    finally:
        await a.close()
        await b.close()


@on_uvloop
async def test_hello_maps_session_to_sender_and_replies_reuse_it() -> None:
    async with pair() as (a, inbox_a, b, inbox_b):
        a.send(b.addr, StatusRequest(addr=a.addr, nonce=1))
        items = await inbox_b.wait(1)
        assert items[0] == (StatusRequest(addr=a.addr, nonce=1), a.addr)
        b.send(a.addr, StatusRequest(addr=b.addr, nonce=2))
        items = await inbox_a.wait(1)
        assert items[0][1] == b.addr
        assert not a.inbound, "the reply must come over the session a opened"


@on_uvloop
async def test_a_discovery_answer_to_a_peer_without_a_session_goes_as_a_datagram() -> None:
    async with pair() as (a, _inbox_a, b, inbox_b):
        reply = DiscoverReply(1, a.addr, 1, a.addr, NO_EPOCH, (), 7)
        a.send(b.addr, reply)
        assert (await inbox_b.wait(1))[0] == (reply, a.addr)
        assert a.sessions == {} and not b.inbound, "no TCP session for a discovery answer"
        # Over a session that exists, it goes over the session like anything else.
        a.send(b.addr, StatusRequest(addr=a.addr, nonce=1))
        await inbox_b.wait(2)
        a.send(b.addr, reply)
        assert (await inbox_b.wait(3))[2] == (reply, a.addr)
        assert a.sessions and a.sent_frames == 2


HEAD = bytes((PROTOCOL_VERSION, 0))  # a frame's header: version, no flags


@on_uvloop
async def test_garbage_and_oversized_tcp_frames_are_counted_and_disconnected() -> None:
    async with pair() as (a, _inbox_a, b, inbox_b):
        host, port = b.addr.split(":")
        for payload, reason in (
            (codec.frame(b"\x7frubbish"), "unknown-version"),
            (codec.frame(HEAD + b"\xc1\xc1"), "malformed"),
            (struct.pack(">I", 10_000_000) + b"x", "oversized"),
        ):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(payload)
            async with asyncio.timeout(TIMEOUT):
                assert await reader.read(10) == b"", "the node must hang up on a bad stream"
            writer.close()
            assert b.drops.counts.get(reason) == 1, b.drops.counts
        a.send(b.addr, StatusRequest(addr=a.addr, nonce=3))
        assert (await inbox_b.wait(1))[0][0] == StatusRequest(addr=a.addr, nonce=3)


@on_uvloop
async def test_udp_garbage_is_counted_and_good_datagrams_still_arrive() -> None:
    async with pair() as (a, _inbox_a, b, inbox_b):
        host, port = b.addr.split(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(HEAD[:1], (host, int(port)))
            sock.sendto(HEAD + b"\x92\x05", (host, int(port)))
        a.send_datagram(host, int(port), StatusRequest(addr=a.addr, nonce=9))
        items = await inbox_b.wait(1)
        assert items[0] == (StatusRequest(addr=a.addr, nonce=9), a.addr)
        assert sum(b.drops.counts.values()) == 2, b.drops.counts


@on_uvloop
async def test_cluster_key_rejects_unsigned_and_forged_server_frames() -> None:
    key = b"k" * 16
    inbox = Inbox()
    keyed = Transport(options(cluster_key=key), inbox)
    plain = Transport(options(), Inbox())
    forger = Transport(options(cluster_key=b"wrong key"), Inbox())
    for t in (keyed, plain, forger):
        await t.start()
    try:
        beat = Heartbeat(src=1, addr=plain.addr, epoch=NO_EPOCH, seq=0, servers=())
        plain.send(keyed.addr, beat)
        await wait_until(lambda: keyed.drops.counts.get("bad-signature") == 1)
        forger.send(keyed.addr, beat)
        await wait_until(lambda: keyed.drops.counts.get("bad-signature") == 2)
        plain.send_datagram("127.0.0.1", keyed.port, beat)
        await wait_until(lambda: keyed.drops.counts.get("bad-signature") == 3)
        signer = Transport(options(cluster_key=key), Inbox())
        await signer.start()
        signer.send(keyed.addr, beat)
        assert (await inbox.wait(1))[0][0] == beat
        await signer.close()
    finally:
        for t in (keyed, plain, forger):
            await t.close()


@on_uvloop
async def test_rate_limit_delays_submits_without_dropping_them() -> None:
    inbox = Inbox()
    server = Transport(options(rate_limit=100.0, rate_burst=5.0), inbox, rate_limited=True)
    client = Transport(options(), Inbox())
    await server.start()
    await client.start()
    try:
        loop = asyncio.get_running_loop()
        op = SendChat(room="r", to=None, text="x", action=False)
        started = loop.time()
        for cmid in range(25):
            client.send(server.addr, Submit("c", cmid, op, VectorClock(), 0.0))
        items = await inbox.wait(25)
        elapsed = loop.time() - started
        assert [m.cmid for m, _ in items] == list(range(25))  # type: ignore[attr-defined]
        assert elapsed >= 0.15, f"20 submits over the burst took only {elapsed:.3f}s at 100/s"
    finally:
        await server.close()
        await client.close()


@contextlib.asynccontextmanager
async def gated(admitting):  # type: ignore[no-untyped-def]
    """A server transport whose reading of operations asks ``admitting``, and a client."""
    inbox = Inbox()
    server = Transport(options(), inbox)
    server.admitting = admitting
    client = Transport(options(), Inbox())
    await server.start()
    await client.start()
    try:
        yield server, inbox, client
    finally:
        await server.close()
        await client.close()


@on_uvloop
async def test_a_leader_behind_on_commits_leaves_operations_in_the_clients_sockets() -> None:
    """While the admission gate is closed, operations (and whatever follows them on the
    session) are not read; once it opens they all arrive, in order, none lost."""
    backlog = [ADMIT_BACKLOG]  # the leader's uncommitted entries, as the gate sees them
    gate = AdmissionGate(lambda: backlog[0])
    asked = [0]

    def admitting() -> bool:
        asked[0] += 1
        return gate()

    async with gated(admitting) as (server, inbox, client):
        op = SendChat(room="r", to=None, text="x", action=False)
        for cmid in range(5):
            client.send(server.addr, Submit("c", cmid, op, VectorClock(), 0.0))
        client.send(server.addr, StatusRequest("127.0.0.1:1", 7))
        await wait_until(lambda: asked[0] >= 5)  # the held session looked again, and again
        assert gate.closings == 1
        assert inbox.items == []
        backlog[0] = ADMIT_BACKLOG // 2 + 1  # draining, but not yet half way: still closed
        seen = asked[0]
        await wait_until(lambda: asked[0] >= seen + 5)
        assert inbox.items == []
        backlog[0] = ADMIT_BACKLOG // 2
        items = await inbox.wait(6)
        assert [getattr(m, "cmid", "status") for m, _ in items] == [0, 1, 2, 3, 4, "status"]
        assert gate.open


@on_uvloop
async def test_a_backlog_that_does_not_drain_holds_operations_a_second_at_most() -> None:
    """The client's beats wait behind its held operations: a gate that never opens (a
    backup that stopped acking and is not dropped yet) must not get clients timed out."""
    gate = AdmissionGate(lambda: ADMIT_BACKLOG)
    async with gated(gate) as (server, inbox, client):
        loop = asyncio.get_running_loop()
        started = loop.time()
        op = SendChat(room="r", to=None, text="x", action=False)
        client.send(server.addr, Submit("c", 1, op, VectorClock(), 0.0))
        client.send(server.addr, StatusRequest("127.0.0.1:1", 7))
        items = await inbox.wait(2)
        assert [type(m).__name__ for m, _ in items] == ["Submit", "StatusRequest"]
        assert loop.time() - started >= ADMISSION_MAX_WAIT
        assert not gate.open


@on_uvloop
async def test_three_discovery_listeners_on_one_host_all_hear_a_broadcast() -> None:
    opts = options()
    inboxes = [Inbox() for _ in range(3)]
    nodes = [Transport(opts, inbox) for inbox in inboxes]
    listeners = []
    for node in nodes:
        await node.start()
        listener = DiscoveryListener(node)
        await listener.start()
        listeners.append(listener)
    sender = Transport(opts, Inbox())
    await sender.start()
    try:
        discovery.broadcast(sender, StatusRequest(addr=sender.addr, nonce=5))
        for inbox in inboxes:
            items = await inbox.wait(1)
            assert items[0] == (StatusRequest(addr=sender.addr, nonce=5), sender.addr)
    finally:
        for listener in listeners:
            listener.close()
        for node in [*nodes, sender]:
            await node.close()


@on_uvloop
async def test_multicast_reaches_every_joined_client_through_one_shared_socket() -> None:
    if not await multicast.probe("127.0.0.1"):
        pytest.skip("loopback multicast does not work here (the client falls back to unicast)")
    opts = options()
    octet, port = random.randrange(1, 250), random.randrange(40000, 50000)
    group = f"239.255.{octet}.{random.randrange(1, 250)}:{port}"
    inboxes = [Inbox() for _ in range(2)]
    nodes = [Transport(opts, inbox) for inbox in inboxes]
    groups = []
    for node in nodes:
        await node.start()
        g = MulticastGroups(node)
        assert g.join(group)
        groups.append(g)
    sender = Transport(opts, Inbox())
    await sender.start()
    try:
        message = LobbyBeat(NO_EPOCH, 1, 77, 0, 1)  # what a leader multicasts to the lobby
        multicast.send(sender, group, message)
        for inbox in inboxes:
            assert (await inbox.wait(1))[0][0] == message
        # The two clients of this process share one socket for the group; one leaving
        # leaves the other joined, the last one closes it.
        shared = groups[0].groups[group]
        assert groups[1].groups[group] is shared and len(shared.listeners) == 2
        groups[0].leave(group)
        second = LobbyBeat(NO_EPOCH, 1, 78, 0, 2)
        multicast.send(sender, group, second)
        assert (await inboxes[1].wait(2))[-1][0] == second
        assert len(inboxes[0].items) == 1  # it left before the second one
        groups[1].leave(group)
        assert shared.sock.fileno() == -1
    finally:
        for g in groups:
            g.close()
        for node in [*nodes, sender]:
            await node.close()


class FakeNode:
    """Answers every frame with a Persist then a Send, to check the driver's group commit."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.flushes = 0

    def start(self, now: float) -> list:  # type: ignore[type-arg]
        return []

    def handle(self, message, src, now):  # type: ignore[no-untyped-def]
        return [Persist(meta=(("n", message.nonce),)), Send(self.peer, message)]

    def tick(self, now: float) -> list:  # type: ignore[type-arg]
        return []

    def flush(self, now: float) -> list:  # type: ignore[type-arg]
        self.flushes += 1
        return []

    def next_deadline(self) -> float | None:
        return None


class FakeStore:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def write(self, effect: Persist) -> None:
        self.log.append(f"write {effect.meta[0][1]}")

    def commit(self) -> None:
        self.log.append("commit")


@on_uvloop
async def test_driver_commits_once_per_iteration_before_sending() -> None:
    log: list[str] = []
    sink = Inbox()
    peer = Transport(options(), sink)
    await peer.start()
    relay = Transport(options(), lambda m, s: driver.on_message(m, s))
    await relay.start()
    node = FakeNode(peer.addr)
    driver = NodeDriver(node, relay, FakeStore(log))  # type: ignore[arg-type]
    orig_send = relay.send

    def logged_send(addr: str, message: object) -> None:
        log.append(f"send {message.nonce}")  # type: ignore[attr-defined]
        orig_send(addr, message)  # type: ignore[arg-type]

    relay.send = logged_send  # type: ignore[method-assign]
    try:
        for n in range(3):
            driver.on_message(StatusRequest(addr="x:1", nonce=n), "x:1")
        await sink.wait(3)
        assert log == ["write 0", "write 1", "write 2", "commit", "send 0", "send 1", "send 2"]
        assert node.flushes == 1
    finally:
        driver.close()
        await relay.close()
        await peer.close()


@on_uvloop
async def test_a_peer_that_does_not_read_is_disconnected_not_buffered_forever() -> None:
    # Listening but never accepting: the kernel completes the handshake, then nobody reads.
    deaf = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    deaf.bind(("127.0.0.1", 0))
    deaf.listen(1)
    deaf_addr = f"127.0.0.1:{deaf.getsockname()[1]}"
    sender = Transport(options(write_buffer_limit=256 * 1024), Inbox())
    await sender.start()
    try:
        big = SendChat(room="r", to=None, text="x" * 3000, action=False)
        sender.send(deaf_addr, Submit("c", 0, big, VectorClock(), 0.0))
        await wait_until(lambda: sender.sessions[deaf_addr].transport is not None)
        for cmid in range(20_000):  # ~60 MB: more than kernel buffers plus our limit
            sender.send(deaf_addr, Submit("c", cmid, big, VectorClock(), 0.0))
            if cmid % 100 == 0:
                await asyncio.sleep(0)  # let the coalesced writes go out
            if sender.drops.counts.get("slow-peer"):
                break
        await wait_until(lambda: sender.drops.counts.get("slow-peer", 0) >= 1)
        await wait_until(lambda: deaf_addr not in sender.sessions)
    finally:
        await sender.close()
        deaf.close()


class BrokenStore(FakeStore):
    def commit(self) -> None:
        raise OSError("disk full")


@on_uvloop
async def test_a_store_failure_stops_the_node_before_it_sends_anything() -> None:
    log: list[str] = []
    sink = Inbox()
    peer = Transport(options(), sink)
    await peer.start()
    relay = Transport(options(), Inbox())
    await relay.start()
    driver = NodeDriver(FakeNode(peer.addr), relay, BrokenStore(log))  # type: ignore[arg-type]
    try:
        driver.on_message(StatusRequest(addr="x:1", nonce=1), "x:1")
        reason = await asyncio.wait_for(driver.stopped, TIMEOUT)
        assert reason.startswith("store failed") and driver.failure
        driver.on_message(StatusRequest(addr="x:1", nonce=2), "x:1")  # ignored once stopped
        await asyncio.sleep(0.05)  # give a wrongly sent frame time to arrive (none may)
        assert sink.items == []
    finally:
        driver.close()
        await relay.close()
        await peer.close()


@on_uvloop
async def test_a_hello_for_another_host_is_not_believed() -> None:
    async with pair() as (_a, _inbox_a, b, inbox_b):
        host, port = b.addr.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(codec.frame(HELLO + b"10.9.9.9:1234"))
        writer.write(codec.frame(codec.encode(StatusRequest(addr="10.9.9.9:1234", nonce=3))))
        message, src = (await inbox_b.wait(1))[0]
        assert message == StatusRequest(addr="10.9.9.9:1234", nonce=3)
        assert src.startswith("127.0.0.1:") and src != "10.9.9.9:1234"
        assert b.drops.counts.get("hello-mismatch") == 1
        assert "10.9.9.9:1234" not in b.sessions
        writer.close()


@on_uvloop
async def test_multicast_probe_says_no_instead_of_failing() -> None:
    # Not a multicast range: joining fails, and the client must fall back to unicast.
    assert await multicast.probe("127.0.0.1", "10.0.0.0") is False


@on_uvloop
async def test_a_frame_the_peer_would_refuse_is_not_sent() -> None:
    async with pair() as (a, _inbox_a, b, inbox_b):
        huge = SendChat(room="r", to=None, text="x" * 4000, action=False)
        a.options = dataclasses.replace(a.options, max_frame=1000)
        a.send(b.addr, Submit("c", 1, huge, VectorClock(), 0.0))
        assert a.drops.counts.get("too-big-to-send") == 1
        a.send(b.addr, StatusRequest(addr=a.addr, nonce=5))
        assert (await inbox_b.wait(1))[0][0] == StatusRequest(addr=a.addr, nonce=5)


def test_a_group_socket_left_by_a_finished_event_loop_is_not_reused() -> None:
    """One event loop per test: a socket another loop read must not be joined again."""
    group = f"239.255.{random.randrange(1, 250)}.{random.randrange(1, 250)}:44444"

    async def join_and_forget() -> object:
        transport = Transport(options(), Inbox())
        groups = MulticastGroups(transport)
        if not groups.join(group):
            pytest.skip("cannot join a multicast group here")
        return groups.groups[group]  # never left: the loop ends with it joined

    first = asyncio.run(join_and_forget())
    second = asyncio.run(join_and_forget())
    assert second is not first
    assert first.sock.fileno() == -1, "the finished loop's socket was closed"  # type: ignore[attr-defined]
    second.sock.close()  # type: ignore[attr-defined]
