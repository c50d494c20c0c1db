"""What a node lets in over real loopback sockets: datagram kinds, sessions, caps, rates."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import resource
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tchat.core import codec
from tchat.core.effects import ClientEvent, Ready
from tchat.core.messages import (
    NO_EPOCH,
    Challenge,
    ClientBeat,
    Discover,
    Epoch,
    Heartbeat,
    HistoryRequest,
    JoinRoom,
    LeaderSuspect,
    NewLeader,
    Register,
    SendChat,
    ServerInfo,
    Submit,
)
from tchat.core.vclock import VectorClock
from tchat.crypto.identity import Identity, sign_binding
from tchat.runtime.client_service import ClientService
from tchat.runtime.limits import LruTable, open_files_budget
from tchat.runtime.options import NetOptions
from tchat.runtime.server_service import ServerService
from tchat.runtime.transport import HELLO, Transport
from tests.test_runtime_transport import Inbox, on_uvloop, options, wait_until

TIMEOUT = 10.0
CHAT = SendChat(room="r", to=None, text="x", action=False)


def submit(cmid: int, op: object = CHAT) -> Submit:
    return Submit("c", cmid, op, VectorClock(), 0.0)  # type: ignore[arg-type]


async def challenge(reader: asyncio.StreamReader) -> bytes:
    """The Challenge a server sends first on every connection it accepts: its nonce."""
    length = int.from_bytes(await reader.readexactly(4), "big")
    message = codec.decode(await reader.readexactly(length))
    assert isinstance(message, Challenge), message
    return message.nonce


def signed(register: Register, nonce: bytes) -> Register:
    """``register`` with a key of its own and its proof for the session of ``nonce``."""
    key = Identity.generate()
    proof = sign_binding(key, nonce, register.name)
    return dataclasses.replace(register, identity=key.public_raw, proof=proof)


def frame(message: object) -> bytes:
    return codec.frame(codec.encode(message))  # type: ignore[arg-type]


def can_bind(host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, 0))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def udp_and_tcp_on_one_port():  # type: ignore[no-untyped-def]
    """A UDP socket and a listening TCP socket on the same 127.0.0.1 port: an attacker's."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket()
        try:
            tcp.bind(("127.0.0.1", port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(8)
        tcp.setblocking(False)
        try:
            yield udp, tcp, f"127.0.0.1:{port}"
        finally:
            udp.close()
            tcp.close()
        return
    pytest.skip("no port free for both UDP and TCP")


@contextlib.asynccontextmanager
async def leader(tmp_path: Path, **kw: object):  # type: ignore[no-untyped-def]
    """One in-process server, leading on its own."""
    port = random.randrange(20000, 32000)
    opts = NetOptions(
        host="127.0.0.1", discovery_port=port, multicast_port=port + 1, data_dir=tmp_path / "s1"
    )
    service = ServerService(dataclasses.replace(opts, server_id=1, **kw))  # type: ignore[arg-type]
    await service.start()
    try:
        await wait_until(lambda: service.node.leadership is not None, TIMEOUT)
        yield service
    finally:
        await service.close()


# -- datagrams ---------------------------------------------------------------------------
@on_uvloop
async def test_client_operations_by_udp_are_refused_and_answered_nowhere(tmp_path: Path) -> None:
    async with leader(tmp_path) as server:
        transport = server.transport
        host, port = server.addr.split(":")
        with udp_and_tcp_on_one_port() as (udp, tcp, addr):
            history = HistoryRequest("c", 1, "lobby", None, None, 500)
            register = Register("mallory", "c", addr, None, False, False, 1)
            for message in (submit(1, JoinRoom("flood")), history, register):
                udp.sendto(codec.encode(message), (host, int(port)))
            # Refused as plain (unsealed) server-port datagrams, or by --insecure's policy.
            counts = transport.drops.counts
            await wait_until(lambda: counts.get("udp-refused", 0) + counts.get("unsealed", 0) >= 3)
            # Nothing was carried out: no connection to the datagrams' source, ever.
            readable, _, _ = select.select([tcp], [], [], 0.3)
            assert not readable, "the server opened a connection to a datagram's source"
            assert addr not in transport.sessions
            assert "mallory" not in server.node.state.users


@on_uvloop
async def test_discovery_answers_are_rate_limited_per_source() -> None:
    inbox = Inbox()
    server = Transport(options(discovery_rate=5.0), inbox, serving=True)
    await server.start()
    try:
        host, port = server.addr.split(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            me = f"127.0.0.1:{udp.getsockname()[1]}"
            udp.sendto(codec.encode(Discover("127.0.0.1:9", "client", 1, 0)), (host, int(port)))
            for nonce in range(200):
                udp.sendto(codec.encode(Discover(me, "client", nonce, 0)), (host, int(port)))
            await wait_until(lambda: len(inbox.items) + sum(server.drops.counts.values()) >= 201)
        assert server.drops.counts["addr-mismatch"] == 1  # an answer asked for someone else
        assert 5 <= len(inbox.items) <= 12, len(inbox.items)  # the burst (2 x 5/s), no more
        assert server.drops.counts["discovery-limited"] >= 188
    finally:
        await server.close()


@on_uvloop
async def test_discovery_answers_are_rate_limited_per_source_host() -> None:
    inbox = Inbox()
    server = Transport(options(discovery_rate=1.0), inbox, serving=True)
    await server.start()
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(30)]
    try:
        host, port = server.addr.split(":")
        for sock in socks:  # 30 addresses of one host, each within its own burst of 2
            sock.bind(("127.0.0.1", 0))
            me = f"127.0.0.1:{sock.getsockname()[1]}"
            for nonce in range(2):
                sock.sendto(codec.encode(Discover(me, "client", nonce, 0)), (host, int(port)))
        await wait_until(lambda: len(inbox.items) + sum(server.drops.counts.values()) >= 60)
        assert len(inbox.items) <= 25, len(inbox.items)  # the host's burst: 2 x 10/s
    finally:
        for sock in socks:
            sock.close()
        await server.close()


@on_uvloop
async def test_a_server_answers_clients_only_on_their_sessions() -> None:
    inbox = Inbox()
    server = Transport(options(), Inbox(), serving=True)
    server.known_server = lambda addr: False
    client = Transport(options(), inbox)
    await server.start()
    await client.start()
    try:
        with udp_and_tcp_on_one_port() as (_udp, tcp, addr):
            server.send(addr, submit(1))  # any frame for a client it has no session with
            assert server.drops.counts["no-session"] == 1 and addr not in server.sessions
            readable, _, _ = select.select([tcp], [], [], 0.2)
            assert not readable
        # A new leader's announcement to a client goes as one datagram, which the client
        # takes only from a server it knows.
        announce = NewLeader(1, server.addr, NO_EPOCH, (ServerInfo(1, server.addr),))
        server.send(client.addr, announce)
        await wait_until(lambda: client.drops.counts.get("udp-refused") == 1)
        client.known_server = lambda addr: addr == server.addr
        server.send(client.addr, announce)
        assert (await inbox.wait(1))[0] == (announce, server.addr)
        assert not server.sessions and not client.inbound
    finally:
        await server.close()
        await client.close()


# -- rates -------------------------------------------------------------------------------
@on_uvloop
async def test_a_flood_is_held_back_while_an_honest_paste_goes_through() -> None:
    inbox = Inbox()
    server = Transport(options(), inbox, rate_limited=True, serving=True)
    client = Transport(options(), Inbox())
    await server.start()
    await client.start()
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        for cmid in range(50):  # a 50-line paste
            client.send(server.addr, submit(cmid))
        await inbox.wait(50, timeout=1.0)
        assert loop.time() - started < 1.0
        # Then a flood of room joins and history requests (each a log entry or a big
        # answer): a person's pace goes through, the flood waits in its own socket.
        for cmid in range(100):
            client.send(server.addr, submit(1000 + cmid, JoinRoom(f"r{cmid}")))
        await wait_until(lambda: len(inbox.items) >= 60)
        # Its beats still get through: the leader must not time out a client that joined
        # many rooms at once while its joins wait their turn.
        client.send(server.addr, ClientBeat("c", NO_EPOCH, 0))
        await wait_until(lambda: any(type(m) is ClientBeat for m, _ in inbox.items), 0.5)
        await asyncio.sleep(1.0)  # a second of flooding: what got in is bounded by the rate
        joined = sum(1 for m, _ in inbox.items if isinstance(m, Submit)) - 50
        assert 20 <= joined <= 30, joined  # burst 20, then 5/s
        assert server.inbound and not any(s.closed for s in server.inbound)
    finally:
        await server.close()
        await client.close()


@on_uvloop
async def test_history_requests_are_rate_limited_per_host_across_sessions() -> None:
    inbox = Inbox()
    server = Transport(options(), inbox, rate_limited=True, serving=True)
    clients = [Transport(options(), Inbox()) for _ in range(8)]
    await server.start()
    for c in clients:
        await c.start()
    try:
        for n in range(50):
            for c in clients:
                c.send(server.addr, HistoryRequest("c", n, "lobby", None, None, 500))
        await wait_until(lambda: len(inbox.items) >= 80)
        await asyncio.sleep(0.5)
        # 8 sessions x 20 would be 160 at once: the host's bucket (80 + 20/s) holds them.
        assert len(inbox.items) <= 100, len(inbox.items)
    finally:
        await server.close()
        for c in clients:
            await c.close()


# -- connections ---------------------------------------------------------------------------
@on_uvloop
async def test_connections_over_the_per_host_cap_are_refused_another_host_logs_in(
    tmp_path: Path,
) -> None:
    if not can_bind("127.0.0.2"):
        pytest.skip("cannot bind 127.0.0.2")
    async with leader(tmp_path, max_connections_per_host=4) as server:
        transport = server.transport
        host, port = server.addr.split(":")
        held = [await asyncio.open_connection(host, int(port)) for _ in range(4)]
        await wait_until(lambda: len(transport.inbound) == 4)
        reader, writer = await asyncio.open_connection(host, int(port))
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read(10) == b"", "the fifth connection must be closed at once"
        writer.close()
        assert transport.drops.counts["conn-cap-host"] == 1
        events: list[ClientEvent] = []
        other = dataclasses.replace(server.options, host="127.0.0.2", server_id=None)
        client = ClientService(other, "bob", events.append)
        try:
            await client.start()
            await wait_until(lambda: any(isinstance(e, Ready) for e in events), TIMEOUT)
        finally:
            await client.close()
        for _r, w in held:
            w.close()


@on_uvloop
async def test_a_connection_that_never_registers_is_closed() -> None:
    server = Transport(options(register_timeout=0.3), Inbox(), serving=True)
    await server.start()
    try:
        host, port = server.addr.split(":")
        loop = asyncio.get_running_loop()
        silent = await asyncio.open_connection(host, int(port))
        half = await asyncio.open_connection(host, int(port))
        half[1].write(frame(submit(1))[:7])  # a frame begun, never finished
        speaking = await asyncio.open_connection(host, int(port))
        speaking[1].write(codec.frame(HELLO + b"127.0.0.1:1"))
        speaking[1].write(frame(ClientBeat("c", NO_EPOCH, 0)))
        started = loop.time()
        async with asyncio.timeout(TIMEOUT):
            await challenge(silent[0])
            await challenge(half[0])
            assert await silent[0].read(10) == b""
            assert await half[0].read(10) == b""
        assert 0.25 <= loop.time() - started <= 3.0
        assert server.drops.counts["register-timeout"] == 2
        assert len(server.inbound) == 1  # the one that spoke stays (until it goes idle)
        for _r, w in (silent, half, speaking):
            w.close()
    finally:
        await server.close()


@on_uvloop
async def test_an_idle_session_is_closed() -> None:
    server = Transport(options(idle_timeout=0.4), Inbox(), serving=True)
    await server.start()
    try:
        host, port = server.addr.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(frame(ClientBeat("c", NO_EPOCH, 0)))
        async with asyncio.timeout(TIMEOUT):
            await challenge(reader)
            assert await reader.read(10) == b""
        assert server.drops.counts["idle-timeout"] == 1
        writer.close()
    finally:
        await server.close()


@on_uvloop
async def test_a_client_that_does_not_read_is_closed_once_its_buffer_fills() -> None:
    limit = 256 * 1024
    server = Transport(
        options(client_buffer_limit=limit, write_buffer_limit=16 * 1024 * 1024),
        Inbox(),
        serving=True,
    )
    await server.start()
    try:
        host, port = server.addr.split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind(("127.0.0.1", 0))
        me = f"127.0.0.1:{sock.getsockname()[1]}"
        sock.connect((host, int(port)))
        sock.sendall(codec.frame(HELLO + me.encode()))
        sock.sendall(frame(Register("deaf", "c", me, None, False, False, 1)))
        await wait_until(lambda: me in server.sessions)
        big = submit(1, SendChat(room="r", to=None, text="x" * 3000, action=False))
        sent = 0
        for n in range(8000):  # ~24 MB at most: past either limit plus kernel buffers
            server.send(me, big)
            sent += 3000
            if n % 50 == 0:
                await asyncio.sleep(0)  # the coalesced writes go out
            if server.drops.counts.get("slow-peer"):
                break
        await wait_until(lambda: me not in server.sessions)
        # Closed at its client limit (plus what the kernel buffers), far below the 16 MiB
        # a server peer may hold here.
        assert server.drops.counts["slow-peer"] == 1
        assert sent < 8 * 1024 * 1024, sent
        sock.close()
    finally:
        await server.close()


# -- the daemon ------------------------------------------------------------------------------
def test_the_daemon_raises_its_open_file_limit(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 256
    if hard != resource.RLIM_INFINITY and hard <= low:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    port = random.randrange(20000, 32000)
    command = [sys.executable, "-m", "tchat", "--daemon", "--host", "127.0.0.1"]
    command += ["--discovery-port", str(port), "--multicast-port", str(port + 1)]
    command += ["--data-dir", str(tmp_path / "d")]
    proc = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        preexec_fn=lower,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
    )
    try:
        assert proc.stderr is not None
        seen = []
        for _ in range(200):  # bounded: the start lines come first
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "tchat daemon id=" in line:
                break
        assert any("open-file limit" in line for line in seen), seen
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        now_soft = row.split()[3]
        assert now_soft == (str(hard) if hard != resource.RLIM_INFINITY else "unlimited")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@on_uvloop
async def test_a_register_or_discover_for_another_address_is_refused() -> None:
    inbox = Inbox()
    server = Transport(options(), inbox, serving=True)
    await server.start()
    try:
        host, port = server.addr.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        me = "127.0.0.1:{}".format(writer.get_extra_info("sockname")[1])
        writer.write(codec.frame(HELLO + me.encode()))
        writer.write(frame(Register("eve", "c", "127.0.0.1:9", None, False, False, 1)))
        # Its discovery answer would go by datagram to a third party.
        writer.write(frame(Discover("127.0.0.1:9", "client", 1, 0)))
        # Its LeaderAlive would go to whoever holds that address's session.
        writer.write(frame(LeaderSuspect("c", "127.0.0.1:9", Epoch(1, 1))))
        nonce = await challenge(reader)
        writer.write(frame(signed(Register("eve", "c", me, None, False, False, 2), nonce)))
        items = await inbox.wait(1)
        assert [m.attempt for m, _ in items] == [2]  # type: ignore[attr-defined]
        assert server.drops.counts["register-addr"] == 1
        assert server.drops.counts["addr-mismatch"] == 2
        writer.close()
    finally:
        await server.close()


def test_the_connection_cap_leaves_open_files_to_spare() -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = open_files_budget(10**9)
    if soft != resource.RLIM_INFINITY:
        assert budget <= soft - 128
    assert open_files_budget(64) == min(64, budget)


@on_uvloop
async def test_a_client_whose_session_the_leader_closed_comes_back_by_itself(
    tmp_path: Path,
) -> None:
    """The leader never reconnects to a client: the client does, and carries on."""
    async with leader(tmp_path) as server:
        events: list[ClientEvent] = []
        client = ClientService(server.options, "carol", events.append)
        try:
            await client.start()
            await wait_until(lambda: any(isinstance(e, Ready) for e in events), TIMEOUT)
            session = server.transport.sessions[client.addr]
            session.abort()  # as the server does to a client that does not read
            # Frames for it now have nowhere to go: dropped, never a connection to it.
            client.submit(JoinRoom("r"))
            cmid = client.submit(SendChat("r", None, "still here", False))
            assert await asyncio.wait_for(client.acked(cmid), TIMEOUT)
            assert server.transport.sessions[client.addr] is not session
            assert client.transport is not None
            assert not client.transport.inbound, "the server opened a connection to a client"
        finally:
            await client.close()


@on_uvloop
async def test_a_quiet_session_from_a_server_is_not_closed_for_being_idle() -> None:
    server = Transport(options(idle_timeout=0.2), Inbox(), serving=True)
    peer_inbox = Inbox()
    peer = Transport(options(), peer_inbox)
    await server.start()
    await peer.start()
    try:
        beat = Heartbeat(src=2, addr=peer.addr, epoch=NO_EPOCH, seq=0, servers=())
        peer.send(server.addr, beat)
        await wait_until(lambda: len(server.inbound) == 1)
        session = next(iter(server.inbound))
        await wait_until(lambda: session.server_peer)
        await asyncio.sleep(0.6)  # three idle timeouts, a sweep or more
        assert not session.closed and "idle-timeout" not in server.drops.counts
    finally:
        await server.close()
        await peer.close()


@on_uvloop
async def test_connections_over_the_total_cap_are_refused_and_slots_come_back() -> None:
    server = Transport(options(max_connections=3, max_connections_per_host=0), Inbox())
    await server.start()
    try:
        host, port = server.addr.split(":")
        held = [await asyncio.open_connection(host, int(port)) for _ in range(3)]
        await wait_until(lambda: len(server.inbound) == 3)
        reader, writer = await asyncio.open_connection(host, int(port))
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read(10) == b""
        writer.close()
        assert server.drops.counts["conn-cap-total"] == 1
        held.pop()[1].close()  # one leaves: its slot is free again
        await wait_until(lambda: len(server.inbound) == 2 and server.caps.open == 2)
        again = await asyncio.open_connection(host, int(port))
        await wait_until(lambda: len(server.inbound) == 3)
        assert server.drops.counts["conn-cap-total"] == 1
        for _r, w in [*held, again]:
            w.close()
    finally:
        await server.close()


def test_source_tables_forget_the_least_recent_when_full() -> None:
    table: LruTable[str, list[str]] = LruTable(3, lambda key: [key])
    for key in ("a", "b", "c"):
        table.get(key)
    table.get("a")  # used again: "b" is now the least recent
    table.get("d")
    assert list(table.entries) == ["c", "a", "d"] and len(table) == 3
