"""One TCP session: length-prefixed frames in and out, hello, rate-limit backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tchat.core import codec
from tchat.core.errors import OversizedFrame, RemoteProtocolError
from tchat.core.messages import Message, Submit
from tchat.runtime.ratelimit import TokenBucket

if TYPE_CHECKING:
    from tchat.runtime.transport import Transport

logger = logging.getLogger(__name__)

# First frame of a connection we open: names our own address so the peer can answer us by it.
# Version byte 0 never starts a codec frame, so a hello cannot be mistaken for a message.
HELLO = b"\x00tchat-hello\x00"
USER_TIMEOUT_MS = 5000
ADMISSION_RECHECK = 0.005  # seconds between looks at a closed admission gate
# Seconds a session waits at most for a closed gate: its client's beats are behind the
# held operations, and a backlog that does not drain (a backup that stopped acking but is
# not dropped yet) must not make the leader time its clients out.
ADMISSION_MAX_WAIT = 1.0


class DropCounters:
    """Frames dropped or refused, by reason; logged with a clear reason, throttled per reason."""

    LOGGED_PER_REASON = 20

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.listeners: list[Callable[[str, str, str], None]] = []

    def count(self, reason: str, peer: str, detail: str = "") -> None:
        n = self.counts.get(reason, 0) + 1
        self.counts[reason] = n
        if n <= self.LOGGED_PER_REASON or n % 1000 == 0:
            logger.warning("dropped frame from %s: %s (%s) [%s so far]", peer, reason, detail, n)
        for listener in self.listeners:
            listener(reason, peer, detail)

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bad address {addr!r}")
    return host, int(port)


class Session(asyncio.Protocol):
    """One TCP connection carrying length-prefixed frames, in or out."""

    def __init__(self, owner: Transport, peer_addr: str | None, outbound: bool) -> None:
        self.owner = owner
        self.peer_addr = peer_addr  # the peer's advertised "host:port" (from its hello)
        self.outbound = outbound
        self.transport: Any = None  # asyncio.Transport once connected
        self.decoder = codec.FrameDecoder(owner.options.max_frame + 4)
        self.pending: list[bytes] = []  # frames written while still connecting
        self.outbox: list[bytes] = []  # frames of this loop iteration, written together
        self.pending_bytes = 0
        self.closed = False
        self.first = True
        self.socket_peer = "?"
        self.bucket: TokenBucket | None = None
        # decoded frames waiting for rate-limit tokens or the admission gate, held since
        self.held: deque[Message] = deque()
        self.held_since = 0.0
        self.resume_handle: asyncio.TimerHandle | None = None

    @property
    def label(self) -> str:
        return self.peer_addr or self.socket_peer

    # -- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.socket_peer = f"{peer[0]}:{peer[1]}"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # A peer whose host vanished (partition, power loss) never sends a RST: without
            # this the kernel retransmits for ~15 minutes while our frames pile up. After
            # USER_TIMEOUT of unacknowledged data the session dies and the next Send
            # reconnects (the core retransmits what matters).
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
        # Either side may have opened it: a client answers over the session a server opened
        # to reply to its Discover, so the limit applies to both directions.
        if self.owner.rate_limited:
            opts = self.owner.options
            self.bucket = TokenBucket(opts.rate_limit, opts.rate_burst, self.owner.loop.time())
        if self.outbound:
            self.transport.write(codec.frame(HELLO + self.owner.addr.encode()))
            for data in self.pending:
                self.transport.write(data)
            self.pending.clear()
            self.pending_bytes = 0
            self._check_buffer()
        else:
            self.owner.inbound.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except OversizedFrame as exc:
            self._drop(exc.reason, f"tcp: {exc}")
            return
        for raw in frames:
            if self.closed:
                return
            if self.first:
                self.first = False
                if raw.startswith(HELLO):
                    self._hello(raw[len(HELLO) :])
                    continue
            try:
                message = self.owner.decode(raw)
            except RemoteProtocolError as exc:
                # A byte stream with a bad frame in it cannot be trusted any further.
                self._drop(exc.reason, f"tcp: {exc}")
                return
            if self.held:  # reading is paused; these wait their turn
                self.held.append(message)
                continue
            if isinstance(message, Submit):
                again = self._wait_for(message)
                if again is not None:
                    self._hold(message, again)
                    continue
            self.owner.dispatch(message, self.label)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.resume_handle is not None:
            self.resume_handle.cancel()
        self.owner.forget(self)
        logger.debug("session %s closed (%s)", self.label, exc)

    def pause_writing(self) -> None:  # flow control is by buffer size in _check_buffer
        pass

    def resume_writing(self) -> None:
        pass

    # -- writing ----------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.transport is None:
            if self.pending_bytes + len(data) > self.owner.options.write_buffer_limit:
                self.owner.drops.count("send-buffer-full", self.label, "still connecting")
                return
            self.pending.append(data)
            self.pending_bytes += len(data)
            return
        # Coalesce: every frame for this peer in one loop iteration goes out in one write.
        if not self.outbox:
            self.owner.mark_dirty(self)
        self.outbox.append(data)

    def flush_outbox(self) -> None:
        # is_closing(): the connection broke and connection_lost is still to come; what we
        # had for it is lost with it, as if written just before the break.
        if self.closed or self.transport is None or self.transport.is_closing() or not self.outbox:
            self.outbox.clear()
            return
        data = self.outbox[0] if len(self.outbox) == 1 else b"".join(self.outbox)
        self.outbox.clear()
        try:
            self.transport.write(data)
        except RuntimeError:
            # uvloop: the handle closed under us (the peer reset the connection) and
            # neither is_closing() nor connection_lost has caught up yet.
            self._drop("closed", "connection closed while writing")
            return
        self._check_buffer()

    def _check_buffer(self) -> None:
        assert self.transport is not None
        if self.transport.get_write_buffer_size() > self.owner.options.write_buffer_limit:
            self._drop("slow-peer", "write buffer full: disconnected")

    def _drop(self, reason: str, detail: str) -> None:
        """Count why this connection cannot go on, and close it."""
        self.owner.drops.count(reason, self.label, detail)
        self.abort()

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.owner.forget(self)
        if self.transport is not None:
            self.transport.abort()

    # -- internals --------------------------------------------------------------
    def _hello(self, payload: bytes) -> None:
        try:
            addr = payload.decode("ascii")
            split_addr(addr)
        except (UnicodeDecodeError, ValueError):
            self.owner.drops.count("bad-hello", self.socket_peer, repr(payload[:40]))
            self.abort()
            return
        claimed_host = addr.rpartition(":")[0]
        real_host = self.socket_peer.rpartition(":")[0]
        if claimed_host != real_host:
            # Outbound connections leave from --host, so a peer can only speak for an
            # address on its own host: nobody redirects another node's traffic to itself.
            self.owner.drops.count(
                "hello-mismatch", self.socket_peer, f"claims {addr}: answered by socket address"
            )
            return
        self.peer_addr = addr
        self.owner.adopt(self)

    def _wait_for(self, message: Submit) -> float | None:
        """None if this operation may go to the node now, else when to look again: the
        owner is not admitting operations (a leader behind on commits), or this session's
        rate-limit bucket is empty. Anything else the session carries waits behind it."""
        loop = self.owner.loop
        admitting = self.owner.admitting
        if (
            admitting is not None
            and not admitting()
            and (not self.held or loop.time() < self.held_since + ADMISSION_MAX_WAIT)
        ):
            return loop.time() + ADMISSION_RECHECK
        if self.bucket is not None and not self.bucket.take(loop.time()):
            return self.bucket.ready_at(loop.time())
        return None

    def _hold(self, message: Submit, until: float) -> None:
        """Backpressure: stop reading this session until ``until``, then try again."""
        if not self.held:
            self.held_since = self.owner.loop.time()
        self.held.append(message)
        if self.resume_handle is None and self.transport is not None:
            self.transport.pause_reading()
            self.resume_handle = self.owner.loop.call_at(until, self._release)

    def _release(self) -> None:
        self.resume_handle = None
        if self.closed or self.transport is None:
            return
        while self.held:
            message = self.held[0]
            if isinstance(message, Submit):
                again = self._wait_for(message)
                if again is not None:
                    self.resume_handle = self.owner.loop.call_at(again, self._release)
                    return
            self.held.popleft()
            self.owner.dispatch(message, self.label)
        self.transport.resume_reading()
