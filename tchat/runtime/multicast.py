"""IP multicast for rooms: send one datagram per group, join groups on the --host interface only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket

from tchat.core.messages import Message
from tchat.runtime.transport import Transport, split_addr

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 0.15
RECEIVE_BUFFER = 1 << 20  # bytes (the kernel caps it at net.core.rmem_max)


def group_socket(group_ip: str, port: int, iface_ip: str) -> socket.socket:
    """A socket bound to the group's port that several processes of one host can share."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # A burst of room frames must not overflow the default ~200 KiB buffer: a lost
        # frame costs the client a gap repair (a resume), far dearer than the memory.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        # Bound to the group address, so datagrams of other groups on the same port stay out.
        sock.bind((group_ip, port))
        mreq = socket.inet_aton(group_ip) + socket.inet_aton(iface_ip)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


_Key = tuple[str, str, asyncio.AbstractEventLoop]  # group, interface, the loop reading it


class _Shared:
    """One group socket of this process and the transports that joined the group on it.

    Several clients in one process (a load generator, a test) share it: the kernel copies
    each datagram once per process instead of once per client, and it is read and decoded
    once (the process's decode cache) before every member's node gets it."""

    # Listener calls per readiness callback: the loop goes round (timers, beats, other
    # sockets) at least every ~1,000 node steps however deep the socket's backlog.
    MAX_DISPATCH = 1024

    def __init__(self, key: _Key, sock: socket.socket) -> None:
        self.key = key
        self.sock = sock
        self.loop = key[2]  # whose reader it is
        self.channel = f"multicast {key[0]}"
        self.listeners: dict[int, Transport] = {}  # id(transport) -> transport, join order

    def readable(self) -> None:
        recvfrom = self.sock.recvfrom
        listeners = self.listeners
        for _ in range(max(1, self.MAX_DISPATCH // max(1, len(listeners)))):
            try:
                data, addr = recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("%s: %s", self.channel, exc)
                return
            for key, transport in tuple(listeners.items()):
                if key in listeners:  # a node may leave the group while handling a frame
                    transport.receive_datagram(data, addr, self.channel)


_shared: dict[_Key, _Shared] = {}  # this process's socket for each


def _forget_closed_loops() -> None:
    """Drop sockets left behind by event loops that are gone (one loop per test, say)."""
    for key, shared in list(_shared.items()):
        if shared.loop.is_closed():
            del _shared[key]
            shared.sock.close()


class MulticastGroups:
    """The room groups a client has joined; each feeds its node from this process's one
    socket for the group.

    Joining is synchronous (socket + membership + ``loop.add_reader``) so that a group is
    joined before the node handles the next frame: an async join could miss the room's
    first multicast frames and force a gap repair.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.groups: dict[str, _Shared] = {}
        self.failed: set[str] = set()
        self.loop = asyncio.get_running_loop()

    def join(self, group: str) -> bool:
        if group in self.groups:
            return True
        key = (group, self.transport.options.host, self.loop)
        shared = _shared.get(key)
        if shared is None:
            _forget_closed_loops()
            try:
                ip, port = split_addr(group)
                sock = group_socket(ip, port, self.transport.options.host)
            except (OSError, ValueError) as exc:
                logger.warning("cannot join multicast group %s: %s", group, exc)
                self.failed.add(group)
                return False
            shared = _shared[key] = _Shared(key, sock)
            self.loop.add_reader(sock.fileno(), shared.readable)
        shared.listeners[id(self.transport)] = self.transport
        self.groups[group] = shared
        return True

    def leave(self, group: str) -> None:
        shared = self.groups.pop(group, None)
        if shared is None:
            return
        shared.listeners.pop(id(self.transport), None)
        if not shared.listeners and _shared.get(shared.key) is shared:
            del _shared[shared.key]
            self.loop.remove_reader(shared.sock.fileno())
            shared.sock.close()

    def close(self) -> None:
        for group in list(self.groups):
            self.leave(group)


def send(transport: Transport, group: str, message: Message) -> None:
    """One datagram to ``group`` from our UDP socket (IP_MULTICAST_IF = --host, TTL 1)."""
    try:
        ip, port = split_addr(group)
    except ValueError:
        transport.drops.count("bad-group", group, "cannot multicast")
        return
    transport.send_datagram(ip, port, message)


class _ProbeProtocol(asyncio.DatagramProtocol):
    def __init__(self, token: bytes, done: asyncio.Future[bool]) -> None:
        self.token = token
        self.done = done

    def datagram_received(self, data: bytes, addr: object) -> None:
        if data == self.token and not self.done.done():
            self.done.set_result(True)


async def probe(host: str, base: str = "239.255.42.0", timeout: float = PROBE_TIMEOUT) -> bool:
    """Can this host receive multicast on ``host``'s interface? Join a probe group, send, wait."""
    rng = random.Random()
    octets = base.split(".")
    group_ip = f"{octets[0]}.{octets[1]}.255.{rng.randrange(1, 255)}"
    loop = asyncio.get_running_loop()
    token = rng.randbytes(16)
    done: asyncio.Future[bool] = loop.create_future()
    sender: socket.socket | None = None
    udp: asyncio.BaseTransport | None = None
    try:
        sock = group_socket(group_ip, 0, host)
        port = sock.getsockname()[1]
        udp, _ = await loop.create_datagram_endpoint(lambda: _ProbeProtocol(token, done), sock=sock)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(host))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        for _ in range(3):  # three tries over the timeout: one lost datagram is not a verdict
            sender.sendto(token, (group_ip, port))
            with contextlib.suppress(asyncio.TimeoutError):
                return await asyncio.wait_for(asyncio.shield(done), timeout / 3)
        return False
    except OSError as exc:
        logger.info("multicast probe on %s failed: %s", host, exc)
        return False
    finally:
        if sender is not None:
            sender.close()
        if udp is not None:
            udp.close()
