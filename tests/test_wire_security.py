"""Encrypted sessions (issue 15): Noise on every TCP session, who may send what, pins."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tchat.core import codec
from tchat.core.messages import (
    NO_EPOCH,
    Epoch,
    Heartbeat,
    JoinRequest,
    Message,
    NewLeader,
    ServerInfo,
    StatusRequest,
    StepDown,
)
from tchat.core.vclock import VectorClock
from tchat.crypto.cluster import ClusterSecret, ServerKeys
from tchat.crypto.known_clusters import KeyChanged, KnownClusters
from tchat.runtime import limits
from tchat.runtime.options import NetOptions
from tchat.runtime.secure import ClusterTrust, PinnedTrust, WireSecurity
from tchat.runtime.transport import Transport
from tests.test_runtime_transport import Inbox, on_uvloop, wait_until

SECRET = ClusterSecret.generate()


def options(**kw: object) -> NetOptions:
    base = NetOptions(host="127.0.0.1", discovery_port=random.randrange(20000, 40000))
    return dataclasses.replace(base, **kw)


def server_security(server_id: int, secret: ClusterSecret = SECRET) -> WireSecurity:
    import time

    return WireSecurity.for_server(secret, ServerKeys.generate(), server_id, time.time)


def client_security(secret: ClusterSecret = SECRET) -> WireSecurity:
    return WireSecurity(ClusterTrust(secret.public_key))


@contextlib.asynccontextmanager
async def node(
    security: WireSecurity | None, rate_limited: bool = False, **kw: object
) -> AsyncIterator[tuple[Transport, Inbox]]:
    inbox = Inbox()
    transport = Transport(
        options(**kw), inbox, security=security, serving=True, rate_limited=rate_limited
    )
    transport.known_server = lambda _addr: True  # every test node may open sessions
    await transport.start()
    try:
        yield transport, inbox
    finally:
        await transport.close()


def beat(src: int, addr: str) -> Heartbeat:
    return Heartbeat(src=src, addr=addr, epoch=Epoch(3, src), seq=1, servers=())


def forgeries(addr: str) -> list[Message]:
    """The issue's attacks on the cluster, as a client session would send them."""
    huge = Epoch(2**40, 666)
    return [
        NewLeader(666, addr, huge, (ServerInfo(666, addr),)),
        StepDown(1, Epoch(3, 1)),
        JoinRequest(666, addr, NO_EPOCH, VectorClock()),
        beat(1, addr),  # a captured heartbeat, replayed
    ]


@on_uvloop
async def test_servers_talk_over_noise_and_know_each_other() -> None:
    async with node(server_security(1)) as (a, inbox_a), node(server_security(2)) as (b, inbox_b):
        a.send(b.addr, beat(1, a.addr))
        items = await inbox_b.wait(1)
        assert items[0] == (beat(1, a.addr), a.addr)
        b.send(a.addr, beat(2, b.addr))  # the answer comes back over a's session
        assert (await inbox_a.wait(1))[0] == (beat(2, b.addr), b.addr)
        (session,) = b.inbound
        assert session.server_peer and session.channel is not None
        assert session.channel.peer_server == 1
        outbound = a.sessions[b.addr]
        assert outbound.channel is not None and outbound.channel.peer_server == 2
        # Both ends hold the same handshake hash: what a login proof binds to.
        assert session.channel_binding == outbound.channel_binding
        assert len(session.channel_binding) == 32
        assert not a.drops.counts and not b.drops.counts


@on_uvloop
async def test_server_frames_from_a_client_session_are_dropped_and_counted() -> None:
    # The forged NewLeader / StepDown / JoinRequest and the replayed Heartbeat:
    # a client (no certificate) may complete the handshake, but not speak as a server.
    async with (
        node(server_security(1)) as (server, inbox),
        node(client_security(), rate_limit=0) as (mallory, _),
    ):
        for forged in forgeries(mallory.addr):
            mallory.send(server.addr, forged)
        mallory.send(server.addr, StatusRequest(addr=mallory.addr, nonce=5))
        items = await inbox.wait(1)
        assert items == [(StatusRequest(addr=mallory.addr, nonce=5), mallory.addr)]
        assert server.drops.counts.get("not-a-server") == 4
        (session,) = server.inbound
        assert not session.server_peer


@on_uvloop
async def test_a_server_of_another_cluster_is_refused_both_ways() -> None:
    other = ClusterSecret.generate()
    async with (
        node(server_security(1)) as (ours, inbox_ours),
        node(server_security(2, other)) as (theirs, inbox_theirs),
    ):
        theirs.send(ours.addr, beat(2, theirs.addr))  # they check our certificate: refused
        await wait_until(lambda: theirs.drops.counts.get("handshake-failed") == 1)
        ours.send(theirs.addr, beat(1, ours.addr))
        await wait_until(lambda: ours.drops.counts.get("handshake-failed") == 1)
        assert not inbox_ours.items and not inbox_theirs.items


@on_uvloop
async def test_a_client_with_another_clusters_pin_gets_key_changed(tmp_path: Path) -> None:
    pins = KnownClusters.load(tmp_path / "known_clusters")
    pins.pin("lan", ClusterSecret.generate().public_key, datetime.now(UTC))
    trust = PinnedTrust(pins, "lan", None)
    security = WireSecurity(trust)
    changed: list[KeyChanged] = []
    security.on_key_changed = changed.append
    async with node(server_security(1)) as (server, inbox), node(security) as (client, _):
        client.send(server.addr, StatusRequest(addr=client.addr, nonce=1))
        await wait_until(lambda: bool(changed))
        assert client.drops.counts.get("key-changed") == 1
        assert SECRET.public_key.fingerprint in str(changed[0])
        assert "tchat status" in str(changed[0])
        assert not inbox.items


@on_uvloop
async def test_first_use_pins_the_cluster_and_explicit_fingerprints_are_enforced(
    tmp_path: Path,
) -> None:
    pins = KnownClusters.load(tmp_path / "known_clusters")
    security = WireSecurity(PinnedTrust(pins, "lan", None))
    async with node(server_security(1)) as (server, inbox), node(security) as (client, _):
        client.send(server.addr, StatusRequest(addr=client.addr, nonce=1))
        await inbox.wait(1)
    pin = pins.lookup("lan")
    assert pin is not None and pin.key == SECRET.public_key
    assert security.fingerprint == SECRET.public_key.fingerprint
    wrong = WireSecurity(PinnedTrust(KnownClusters.load(tmp_path / "other"), "lan", "SHA256:nope"))
    async with node(server_security(1)) as (server, inbox), node(wrong) as (client, _):
        client.send(server.addr, StatusRequest(addr=client.addr, nonce=1))
        await wait_until(lambda: client.drops.counts.get("handshake-failed") == 1)
        assert not inbox.items
    assert KnownClusters.load(tmp_path / "other").lookup("lan") is None


def raw_connect(addr: str) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.settimeout(5)
    return sock


@on_uvloop
async def test_plaintext_frames_and_garbage_records_are_refused() -> None:
    async with node(server_security(1)) as (server, inbox):
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(None, raw_connect, server.addr)
        with sock:
            # What the old plaintext protocol sent: a HELLO frame (a 17-byte "record" that
            # is no Noise message 1) then a forged server frame.
            frame = codec.frame(codec.encode(beat(1, "127.0.0.1:1")))
            sock.sendall(b"\x00\x20" + b"\x00" * 32 + frame)
            await wait_until(lambda: sum(server.drops.counts.values()) >= 1)
        sock = await loop.run_in_executor(None, raw_connect, server.addr)
        with sock:
            sock.sendall(b"\xff\xff" + b"x" * 100)  # a record too long to be a handshake
            await wait_until(lambda: server.drops.counts.get("bad-record", 0) >= 1)
        assert not inbox.items


@on_uvloop
async def test_a_silent_stranger_is_closed_at_the_handshake_deadline() -> None:
    async with node(server_security(1), register_timeout=0.2) as (server, _inbox):
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(None, raw_connect, server.addr)
        with sock:
            await wait_until(lambda: server.drops.counts.get("handshake-timeout") == 1)
            await wait_until(lambda: not server.inbound)


def test_handshakes_are_rate_limited_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # A tighter bucket than the product's, so that the test's connects outrun its refill.
    rates = dict(limits.OPERATION_RATES)
    rates["handshake"] = (limits.Rate(1.0, 1.0), limits.Rate(1.0, 5.0))
    monkeypatch.setattr(limits, "OPERATION_RATES", rates)

    @on_uvloop
    async def run() -> None:
        async with node(server_security(1), rate_limited=True) as (server, _inbox):
            loop = asyncio.get_running_loop()
            socks = []
            try:
                for _ in range(15):
                    socks.append(await loop.run_in_executor(None, raw_connect, server.addr))
                await wait_until(lambda: server.drops.counts.get("handshake-limited", 0) >= 8)
            finally:
                for sock in socks:
                    sock.close()

    run()


@on_uvloop
async def test_insecure_transports_still_talk_plaintext() -> None:
    async with node(None) as (a, _), node(None) as (b, inbox_b):
        a.send(b.addr, beat(1, a.addr))
        assert (await inbox_b.wait(1))[0] == (beat(1, a.addr), a.addr)
        (session,) = b.inbound
        assert session.channel is None and session.channel_binding == b""


def test_the_server_frame_table_is_the_cores_from_server_flag() -> None:
    from tchat.core import messages

    every = [
        cls
        for cls in vars(messages).values()
        if isinstance(cls, type) and issubclass(cls, Message) and cls is not Message
    ]
    assert {c for c in every if c.from_server} == set(limits.SERVER_FRAMES)
    assert {c for c in every if not c.from_server} == set(limits.CLIENT_FRAMES)


@pytest.mark.parametrize("size", [200, 70_000])
def test_records_round_trip_frames_of_any_size(size: int) -> None:
    server = server_security(1)
    client = client_security()
    a, b = client.channel(True), server.channel(False)
    out, _ = b.feed(a.start())
    more, plain = a.feed(out)
    assert plain == [] and a.established
    _, plain = b.feed(more)
    assert b.established and b.peer_server is None and plain == []
    data = bytes(random.randbytes(size))
    _, plain = b.feed(a.seal(data))
    assert b"".join(plain) == data
