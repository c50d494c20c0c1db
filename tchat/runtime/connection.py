"""FramedConnection: one TCP connection carrying length-prefixed frames, hello, backpressure."""

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
from tchat.core.messages import (
    ClientBeat,
    Discover,
    LeaderSuspect,
    Message,
    Register,
    StatusRequest,
    Submit,
)
from tchat.runtime.limits import CLIENT_FRAMES, SERVER_FRAMES, SERVER_REQUESTS, operation_kind
from tchat.runtime.ratelimit import TokenBucket
from tchat.runtime.secure import HandshakeFailed, SecureChannel

if TYPE_CHECKING:
    from tchat.runtime.transport import Transport

logger = logging.getLogger(__name__)

# First frame of a connection we open: names our own address so the peer can answer us by it.
# Version byte 0 never starts a codec frame, so a hello cannot be mistaken for a message.
HELLO = b"\x00tchat-hello\x00"
USER_TIMEOUT_MS = 5000
ADMISSION_RECHECK = 0.005  # seconds between looks at a closed admission gate
MIN_RECHECK = 0.001  # the event loop's timer resolution: an earlier look would spin
# A session over a rate limit is still read (so its beats still reach the node: a client
# that joins 40 rooms at once must not be timed out behind them) until this much waits;
# then it is not read until the node has taken what waits.
HELD_FRAMES = 256
HELD_BYTES = 256 * 1024
# Client frames naming the address their answers go to.
ADDRESSED: frozenset[type[Message]] = frozenset((Register, Discover, StatusRequest, LeaderSuspect))
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


class FramedConnection(asyncio.Protocol):
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
        self.host = "?"  # the socket peer's IP: what per-host caps and limits count by
        self.capped = False  # counted in the owner's connection caps
        # Inbound: when it opened, its last complete frame, whether it said who it is.
        self.opened = self.last_frame = 0.0
        self.registered = outbound
        # It speaks as a server (with a cluster key: signed frames): never closed for being
        # idle, since a frame written to a session its peer closed is lost (an election
        # token on a quiet session between two backups would skip a live neighbour).
        self.server_peer = False
        self.buffer_limit = owner.options.write_buffer_limit
        self.buckets: dict[str, TokenBucket] | None = None  # rate limits, by operation kind
        # decoded frames waiting for rate-limit tokens or the admission gate, held since
        self.held: deque[tuple[Message, int]] = deque()  # (message, its frame's bytes)
        self.held_bytes = 0
        self.held_since = 0.0
        self.paused = False  # reading is paused while frames are held
        self.gated = False  # the admission gate (not a rate limit) holds the head frame
        self.resume_handle: asyncio.TimerHandle | None = None
        # The Noise session (None with --insecure): made once the connection is admitted.
        self.channel: SecureChannel | None = None
        self.handshake_timer: asyncio.TimerHandle | None = None

    @property
    def label(self) -> str:
        return self.peer_addr or self.socket_peer

    @property
    def channel_binding(self) -> bytes:
        """The Noise handshake hash: unique to this session (b"" with --insecure), for a
        login proof to sign so that it cannot be replayed on another session."""
        return self.channel.channel_binding if self.channel is not None else b""

    @property
    def established(self) -> bool:
        """Frames may flow: the handshake and the intro are done (or there is no crypto)."""
        return self.channel is None or self.channel.established

    # -- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if peer:
            self.socket_peer = f"{peer[0]}:{peer[1]}"
            self.host = str(peer[0])
        if not self.outbound:
            self.opened = self.last_frame = self.owner.loop.time()
            if not self.owner.admit(self):
                self.closed = True
                transport.abort()  # type: ignore[attr-defined]
                return
            if not self.owner.allow_handshake(self):
                return
        security = self.owner.security
        if security is not None:
            # The responder's work (two DH and a keygen) is only done once the initiator
            # sent its first message; the initiator's deadline is ours to keep (inbound
            # sessions have the sweep's).
            self.channel = security.channel(initiator=self.outbound)
            if self.outbound:
                self.handshake_timer = self.owner.loop.call_later(
                    self.owner.options.register_timeout, self._handshake_expired
                )
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
        if self.owner.limits is not None:
            self.buckets = self.owner.limits.session_buckets()
        if self.outbound:
            self.pending.insert(0, codec.frame(HELLO + self.owner.addr.encode()))
            if self.channel is not None:
                self.transport.write(self.channel.start())
            else:
                self._write_pending()

    def _write_pending(self) -> None:
        """What was written before the session could carry frames, in one write."""
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            self.pending_bytes = 0
            self.transport.write(data if self.channel is None else self.channel.seal(data))
        self._check_buffer()

    def _handshake_expired(self) -> None:
        self.handshake_timer = None
        if not self.closed and not self.established:
            self._drop("handshake-timeout", "no Noise handshake in time")

    def data_received(self, data: bytes) -> None:
        channel = self.channel
        if channel is None:
            self._frames(data)
            return
        was = channel.established
        try:
            out, plaintexts = channel.feed(data)
        except HandshakeFailed as exc:
            security = self.owner.security
            if exc.fatal is not None and security is not None and security.on_key_changed:
                security.on_key_changed(exc.fatal)
            self._drop(exc.reason, exc.detail)
            return
        if out and not self.closed:
            self.transport.write(out)
        if channel.established and not was:
            self._established()
        for plain in plaintexts:
            if self.closed:
                return
            self._frames(plain)

    def _established(self) -> None:
        """The handshake is over and we know who the peer is: frames may flow."""
        channel = self.channel
        assert channel is not None
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
        if channel.peer_server is not None:
            self.server_peer = True  # proved with a cluster certificate
            self.registered = True
        self._write_pending()

    def _frames(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except OversizedFrame as exc:
            self._drop(exc.reason, f"tcp: {exc}")
            return
        if frames and not self.outbound:
            self.last_frame = self.owner.loop.time()  # bytes of a frame never finished do not count
        for raw in frames:
            if self.closed:
                return
            if self.first:
                self.first = False
                if raw.startswith(HELLO):
                    self._hello(raw[len(HELLO) :])
                    continue
            try:
                message = self.owner.decode_stream(raw)
            except RemoteProtocolError as exc:
                # A byte stream with a bad frame in it cannot be trusted any further.
                self._drop(exc.reason, f"tcp: {exc}")
                return
            if self.channel is not None and not self._may_send(message):
                self.owner.drops.count("not-a-server", self.label, type(message).__name__)
                continue
            if type(message) in ADDRESSED and self.owner.serving:
                claimed: str = message.addr  # type: ignore[attr-defined]
                if claimed != self.label:
                    # Answers and announcements go to ``addr`` (some by datagram): only to
                    # where this session is, never to a third party.
                    reason = "register-addr" if type(message) is Register else "addr-mismatch"
                    self.owner.drops.count(reason, self.label, f"claims {claimed}")
                    continue
            if not self.registered:
                self._note_first_words(message)
            if self.held:  # these wait their turn, but for a beat within its own limit
                if type(message) is ClientBeat and self._wait_for(message) is None:
                    self.owner.dispatch(message, self.label)
                else:
                    self._hold(message, len(raw), 0.0)
                continue
            again = self._wait_for(message)
            if again is not None:
                self._hold(message, len(raw), again)
                continue
            self.owner.dispatch(message, self.label)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.resume_handle is not None:
            self.resume_handle.cancel()
        if self.handshake_timer is not None:
            self.handshake_timer.cancel()
            self.handshake_timer = None
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
        if self.transport is None or not self.established:
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
        if self.channel is not None:
            data = self.channel.seal(data)  # one write, one run of records
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
        if self.transport.get_write_buffer_size() > self.buffer_limit:
            # For a client this is a disconnection: the leader's frames for it are lost
            # here, it notices the gap and resumes (or is timed out as any silent client).
            self._drop("slow-peer", "write buffer full: disconnected")

    def close_for(self, reason: str, detail: str) -> None:
        """The owner's verdict (a timeout): count why, and close."""
        self._drop(reason, detail)

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

    def _may_send(self, message: Message) -> bool:
        """Server frames only from a verified server, client frames only from a client."""
        assert self.channel is not None
        if self.channel.peer_server is not None:
            return type(message) in SERVER_FRAMES or type(message) in SERVER_REQUESTS
        return type(message) in CLIENT_FRAMES

    def _note_first_words(self, message: Message) -> None:
        """Whether this inbound session said who it is: a client registering, a server
        (its frames), or a client back after its session broke (its beats; a gap makes
        it register again). Until then it is closed after ``register_timeout``."""
        if message.from_server:
            self.registered = True
            self.server_peer = True
        elif isinstance(message, Register | ClientBeat):
            self.registered = True
            if self.owner.serving:  # a client's session: it gets a client's send buffer
                self.buffer_limit = self.owner.options.client_buffer_limit

    def _wait_for(self, message: Message) -> float | None:
        """None if this frame may go to the node now, else when to look again: the owner
        is not admitting operations (a leader behind on commits), or a rate-limit bucket
        of its kind (this session's or its host's) is empty. Anything else the session
        carries waits behind it."""
        loop = self.owner.loop
        admitting = self.owner.admitting
        self.gated = False
        if (
            admitting is not None
            and isinstance(message, Submit)
            and not admitting()
            and (not self.held or loop.time() < self.held_since + ADMISSION_MAX_WAIT)
        ):
            self.gated = True
            return loop.time() + ADMISSION_RECHECK
        if self.buckets is not None:
            kind = operation_kind(message)
            if kind is not None:
                limits = self.owner.limits
                assert limits is not None
                now = loop.time()
                ready = limits.wait_for(self.buckets, self.host, kind, now)
                return None if ready is None else max(ready, now + MIN_RECHECK)
        return None

    def _hold(self, message: Message, size: int, until: float) -> None:
        """Backpressure: keep ``message`` (and what follows it) until ``until``, then try
        again. A closed admission gate stops reading at once (the operations stay in the
        client's socket, costing the leader nothing); a rate limit once enough waits."""
        if not self.held:
            self.held_since = self.owner.loop.time()
        self.held.append((message, size))
        self.held_bytes += size
        if self.resume_handle is None and until:
            self.resume_handle = self.owner.loop.call_at(until, self._release)
        if (
            not self.paused
            and self.transport is not None
            and (self.gated or len(self.held) >= HELD_FRAMES or self.held_bytes >= HELD_BYTES)
        ):
            self.paused = True
            self.transport.pause_reading()

    def _release(self) -> None:
        self.resume_handle = None
        if self.closed or self.transport is None:
            return
        while self.held:
            message, size = self.held[0]
            again = self._wait_for(message)
            if again is not None:
                self.resume_handle = self.owner.loop.call_at(again, self._release)
                return
            self.held.popleft()
            self.held_bytes -= size
            self.owner.dispatch(message, self.label)
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
