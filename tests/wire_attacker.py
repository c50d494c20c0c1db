"""A LAN attacker's TCP session to a daemon: a modified tchat that speaks as a client.

It completes the Noise handshake as any client may (NX: clients are anonymous) and then
writes whatever frames it likes. On a tree before issue 15 (no tchat.runtime.secure) it
speaks the old plaintext protocol, so the attack tests can show they fail there.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from tchat.core import codec
from tchat.core.messages import Message
from tchat.runtime.connection import HELLO

try:
    from tchat.crypto.cluster import ClusterPublicKey
    from tchat.runtime.secure import ClusterTrust, SecureChannel, WireSecurity
except ImportError:  # the tree before issue 15: plaintext sessions
    SecureChannel = None  # type: ignore[assignment,misc]


class AnyCluster(ClusterTrust if SecureChannel is not None else object):  # type: ignore[misc]
    """The attacker accepts whatever key the server shows."""

    def check(self, offered: ClusterPublicKey) -> None:
        self.key = offered


class Session:
    """One attacker session to ``addr`` (host:port), ready to send frames."""

    def __init__(self, addr: str, timeout: float = 5.0) -> None:
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)
        local = self.sock.getsockname()
        self.addr = f"{local[0]}:{local[1]}"
        self.channel = None
        self.frames = codec.FrameDecoder()
        if SecureChannel is not None:
            channel = WireSecurity(AnyCluster()).channel(True)
            self.sock.sendall(channel.start())
            deadline = time.monotonic() + timeout
            while not channel.established and time.monotonic() < deadline:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("the server hung up during the handshake")
                out, _ = channel.feed(data)
                if out:
                    self.sock.sendall(out)
            if not channel.established:
                raise TimeoutError("no handshake")
            self.channel = channel
        self.write(codec.frame(HELLO + self.addr.encode()))

    def write(self, data: bytes) -> None:
        if self.channel is not None:
            data = self.channel.seal(data)
        self.sock.sendall(data)

    def send(self, message: Message) -> None:
        self.write(codec.frame(codec.encode(message)))

    def until(self, found: Callable[[Message], bool], timeout: float = 10.0) -> Message:
        """The first frame from the server for which ``found`` holds (AssertionError if none)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            assert data, "the server hung up"
            plain = [data] if self.channel is None else self.channel.feed(data)[1]
            for chunk in plain:
                for raw in self.frames.feed(chunk):
                    message = codec.decode(raw)
                    if found(message):
                        return message
        raise AssertionError(f"no such frame within {timeout}s")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
