"""UDP broadcast discovery: servers listen on the discovery port, anyone broadcasts to it;
``--server`` addresses are asked by unicast too, where broadcast does not pass."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

from tchat.core.messages import Message
from tchat.runtime.connection import split_addr
from tchat.runtime.transport import Datagrams, Transport

logger = logging.getLogger(__name__)


def discovery_socket(bind_ip: str, port: int) -> socket.socket:
    """A UDP socket on the discovery port that several nodes of one host can share.

    SO_REUSEADDR + SO_REUSEPORT let every node of the host bind it; broadcast datagrams are
    delivered to each of them. Binding to the broadcast address (not 0.0.0.0) means we only
    hear broadcasts of our own subnet, never unicast traffic meant for someone else.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind((bind_ip, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class DiscoveryListener:
    """Receives Discover / StatusRequest broadcasts and hands them to the node."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.udp: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        opts = self.transport.options
        bind_ip = opts.broadcast
        try:
            ipaddress.IPv4Address(bind_ip)
        except ValueError:
            bind_ip = "0.0.0.0"
        try:
            sock = discovery_socket(bind_ip, opts.discovery_port)
        except OSError as exc:
            logger.warning(
                "cannot bind discovery %s:%s (%s); trying 0.0.0.0",
                bind_ip,
                opts.discovery_port,
                exc,
            )
            sock = discovery_socket("0.0.0.0", opts.discovery_port)
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: Datagrams(self.transport, "discovery", ignore_own=True), sock=sock
        )
        self.udp = udp  # type: ignore[assignment]

    def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
            self.udp = None


def broadcast(transport: Transport, message: Message) -> None:
    """One datagram to the broadcast address on the discovery port, from our own address,
    and the same to each ``--server`` address (a server's node port answers discovery too).

    Each copy is encoded apart: a sealed datagram's counter is good for one receipt, and a
    server hearing the broadcast and the unicast copy would count the second as a replay.
    """
    opts = transport.options
    transport.send_raw_datagram(
        transport.encode_datagram(message), opts.broadcast, opts.discovery_port
    )
    for addr in opts.servers:  # checked HOST:PORT, at most MAX_FALLBACK_SERVERS
        if addr == transport.addr:
            continue
        host, port = split_addr(addr)
        transport.send_raw_datagram(transport.encode_datagram(message, addr), host, port)
