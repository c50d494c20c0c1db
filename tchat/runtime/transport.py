"""TCP framed sessions and UDP datagrams on one host:port, with drop counting and backpressure.

Longer than 400 lines: the sessions and the datagrams share one host:port, one set of drop
counters, the connection caps and the encode and decode caches, and admission (who may open
a session, whose datagrams count) reads all of them. The framed connection itself is
connection.py's, and the limits are limits.py's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from tchat.core import codec
from tchat.core.errors import RemoteProtocolError
from tchat.core.messages import (
    Discover,
    DiscoverReply,
    LobbyBeat,
    LobbyFrame,
    Message,
    NewLeader,
    Register,
    RoomFrame,
    RoomKeyGrant,
    StatusReply,
    Welcome,
)
from tchat.crypto.admin import KIND_ADMIN
from tchat.crypto.errors import CryptoError
from tchat.runtime.connection import HELLO, DropCounters, FramedConnection, Signer, split_addr
from tchat.runtime.datagram_auth import (
    ClientDatagrams,
    DatagramRefused,
    Heard,
    ServerDatagrams,
)
from tchat.runtime.limits import (
    ConnectionCaps,
    DatagramPolicy,
    DiscoveryLimits,
    OperationLimits,
    Rate,
    open_files_budget,
)
from tchat.runtime.options import NetOptions
from tchat.runtime.room_keys import HOLD_SECONDS, LeaderRoomKeys, MemberRoomKeys
from tchat.runtime.secure import WireSecurity

__all__ = ["HELLO", "DropCounters", "FramedConnection", "Transport", "split_addr"]

ADMIN_KIND = bytes((KIND_ADMIN,))  # the first byte of a `tchat admin` datagram

logger = logging.getLogger(__name__)
ENCODED_FRAMES = 64  # recently encoded frames kept for resending to other peers
# Sent as a datagram to a peer we have no session with: discovery is UDP, and every server
# answering each of 10,000 clients over TCP held 10,000 connections (and ran 127.0.0.1 out
# of ports). A lost answer is covered by the asker's retries. A server probing another
# server it heard of (Discover) does not open a connection on that word alone either.
DATAGRAM_REPLIES = (Discover, DiscoverReply, StatusReply)
SWEEP_PERIOD = 1.0  # seconds between looks for unregistered or idle inbound sessions

BIND_ATTEMPTS = 50

MessageHandler = Callable[[Message, str], None]
# A client's say on a verified server datagram before its node sees it (False: not now).
DatagramFilter = Callable[[Message, str, Heard], bool]


class DecodeCache:
    """Frames this process decoded lately, by their bytes: decode a shared frame once.

    A load process or a host with many clients receives the same room frame once per
    client socket (multicast copies the datagram to each; the leader writes the same
    encoded frame to each unicast session). Decoding it once per process and handing every
    client the same message object is safe because messages are frozen (their clocks are
    immutable too); each client's node still handles it. Bounded in entries and frame size;
    a bad frame is never cached, so it is re-decoded and counted as a drop each time.
    """

    MAX_ENTRIES = 512
    MAX_FRAME = 16384  # bytes: room and lobby frames (a full run of room messages is ~4 KiB)

    def __init__(self, key: bytes | None, max_frame: int) -> None:
        self.key = key
        self.max_frame = max_frame
        self.entries: dict[bytes, Message] = {}
        self.hits = 0
        self.misses = 0

    def decode(self, data: bytes) -> Message:
        """Raises a RemoteProtocolError subclass for anything we cannot accept."""
        message = self.entries.get(data)
        if message is not None:
            self.hits += 1
            return message
        message = codec.decode(data, self.key, self.max_frame)
        self.misses += 1
        if len(data) <= self.MAX_FRAME:
            entries = self.entries
            if len(entries) >= self.MAX_ENTRIES:
                del entries[next(iter(entries))]  # the oldest: dicts keep insertion order
            entries[data] = message
        return message


_caches: dict[tuple[bytes | None, int], DecodeCache] = {}


def shared_decode_cache(key: bytes | None, max_frame: int) -> DecodeCache:
    """The process's cache for frames under this cluster key and frame limit."""
    cache = _caches.get((key, max_frame))
    if cache is None:
        cache = _caches[(key, max_frame)] = DecodeCache(key, max_frame)
    return cache


class Datagrams(asyncio.DatagramProtocol):
    """A UDP socket whose datagrams are one frame each (node port, discovery, multicast)."""

    def __init__(self, owner: Transport, channel: str, ignore_own: bool = False) -> None:
        self.owner = owner
        self.channel = channel
        self.ignore_own = ignore_own  # our own broadcasts come back to the discovery socket
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.ignore_own and f"{addr[0]}:{addr[1]}" == self.owner.addr:
            return
        self.owner.receive_datagram(data, addr, self.channel)

    def error_received(self, exc: Exception) -> None:
        logger.debug("%s socket error: %s", self.channel, exc)


class Transport:
    """Binds TCP and UDP on host:port and moves frames; callers get (message, sender addr)."""

    def __init__(
        self,
        options: NetOptions,
        on_message: MessageHandler,
        *,
        rate_limited: bool = False,
        drops: DropCounters | None = None,
        shared_decode: bool = False,
        serving: bool = False,
        security: WireSecurity | None = None,
    ) -> None:
        self.options = options
        # Noise on every TCP session (None: --insecure, plaintext). Inside Noise a frame
        # needs no HMAC of its own: TCP frames are encoded without the cluster key's
        # signature; datagrams keep it until they get their own sealing.
        self.security = security
        self.stream_key = options.cluster_key if security is None else None
        self.on_message = on_message
        self.rate_limited = rate_limited and options.rate_limit > 0
        # A server answers clients only on the sessions they opened: it opens connections
        # to servers alone (``known_server``), never to an address a client named.
        self.serving = serving
        # Whether an address is a server of our cluster (the node's view, set by the
        # service): a server connects only to those; anyone takes NewLeader datagrams only
        # from those. None: nobody is.
        self.known_server: Callable[[str], bool] | None = None
        # Whether clients' operations may be read now; None: always (see ServerService).
        self.admitting: Callable[[], bool] | None = None
        # A client's: signs its Registers for the session they go out on (None: a server).
        self.signer: Signer | None = None
        self.drops = drops or DropCounters()
        self.loop = asyncio.get_running_loop()
        now = self.loop.time()
        self.limits = (
            OperationLimits(Rate(options.rate_limit, options.rate_burst), self.loop.time)
            if self.rate_limited
            else None
        )
        self.datagram_policy = DatagramPolicy(
            DiscoveryLimits(options.discovery_rate, options.discovery_total_rate, now),
            lambda addr: self.known_server is not None and self.known_server(addr),
        )
        self.caps = ConnectionCaps(
            options.max_connections_per_host, open_files_budget(options.max_connections)
        )
        self._sweeper: asyncio.TimerHandle | None = None
        self.sessions: dict[str, FramedConnection] = {}  # peer addr -> the session we send on
        self.inbound: set[FramedConnection] = set()
        self.server: asyncio.Server | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.port = 0
        self.sent_frames = 0
        self.connect_failures = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._dirty: list[FramedConnection] = []
        # Frames just encoded, by message identity (the message is kept, so its id stays
        # its own): one message to many peers, or the same UserList chunks in every
        # Welcome of a login storm, is encoded once.
        self._encoded: dict[int, tuple[Message, bytes]] = {}
        self._addr = f"{options.host}:0"  # until start() binds
        self._last_src: tuple[Any, ...] = ()
        self._last_peer = ""
        # Clients share decoded frames with the other clients of their process; a server's
        # frames (submits, acks) are its own, so it would only fill the cache.
        self.decode_cache = (
            shared_decode_cache(self.stream_key, options.max_frame) if shared_decode else None
        )
        self.datagram_cache = (
            shared_decode_cache(options.cluster_key, options.max_frame) if shared_decode else None
        )
        # Unicast and discovery datagrams: sealed between servers, signed for clients
        # (datagram_auth.py); None with --insecure (plain frames, the cluster key's HMAC).
        self.dgram: ServerDatagrams | ClientDatagrams | None = None
        # Room multicast under room keys (room_keys.py): a secure server seals its room
        # frames once its service gives it the leader's audience; a secure client opens
        # them with the keys its leader grants it. None with --insecure: plain frames.
        self.room_sealer: LeaderRoomKeys | None = None
        self.room_keys: MemberRoomKeys | None = None
        self._hold_timer: asyncio.TimerHandle | None = None
        if security is not None:
            if security.credentials is not None:
                self.dgram = ServerDatagrams(security, self.loop.time)
            else:
                self.dgram = ClientDatagrams(security.trust, self.loop.time)
                self.room_keys = MemberRoomKeys(
                    security.trust, self.decode, self.drops, self.loop.time
                )
        self.datagram_filter: DatagramFilter | None = None
        # A server's `tchat admin` desk (admin_desk.py): takes the admin datagrams that come
        # to our own UDP port; None (a client, or a server without a secret) refuses them.
        self.admin: Callable[[bytes, str], None] | None = None

    @property
    def addr(self) -> str:
        return self._addr

    async def start(self) -> None:
        """Bind TCP, then UDP on the same port number (retrying when port 0 picks a taken one)."""
        host = self.options.host
        for _attempt in range(BIND_ATTEMPTS):
            server = await self.loop.create_server(
                lambda: FramedConnection(self, None, outbound=False),
                host,
                self.options.port,
                reuse_address=True,
                backlog=1024,
            )
            port = server.sockets[0].getsockname()[1]
            try:
                udp, _ = await self.loop.create_datagram_endpoint(
                    lambda: Datagrams(self, "udp"), local_addr=(host, port)
                )
            except OSError:
                server.close()
                if self.options.port:
                    raise
                continue
            sock = udp.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(host))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            self.server, self.udp, self.port = server, udp, port  # type: ignore[assignment]
            self._addr = f"{host}:{port}"
            return
        raise OSError(f"no port on {host} is free for both TCP and UDP")

    async def close(self) -> None:
        self._flush_outboxes()  # last words (StepDown, Logout...) still go out
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        for task in list(self._tasks):
            task.cancel()
        for session in list(self.sessions.values()) + list(self.inbound):
            if session.transport is not None:
                session.transport.close()
            session.closed = True
        self.sessions.clear()
        self.inbound.clear()
        if self.udp is not None:
            self.udp.close()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 0.5)

    # -- receiving --------------------------------------------------------------
    def dispatch(self, message: Message, src: str) -> None:
        if type(message) is RoomKeyGrant:
            self._on_grant(message, src)
            return
        try:
            self.on_message(message, src)
        except Exception:  # the node must survive anything one frame does
            logger.exception("error handling %s from %s", type(message).__name__, src)

    def receive_datagram(self, data: bytes, addr: tuple[Any, ...], channel: str) -> None:
        """One datagram is one frame: authenticate and decode it, or count why not."""
        if addr == self._last_src:  # a room's datagrams all come from the leader
            peer = self._last_peer
        else:
            peer = f"{addr[0]}:{addr[1]}"
            self._last_src, self._last_peer = addr, peer
        if data[:1] == ADMIN_KIND and channel == "udp":
            if self.admin is None:
                self.drops.count("admin-unavailable", peer, "no admin desk (no cluster secret)")
            else:
                try:
                    self.admin(data, peer)
                except Exception:  # as dispatch: the node outlives anything one datagram does
                    logger.exception("error handling an admin datagram from %s", peer)
            return
        dgram = self.dgram
        heard: Heard | None = None
        if self.room_keys is not None and channel.startswith("multicast"):
            self._group_datagram(data, peer, channel)
            return
        try:
            if dgram is None or channel.startswith("multicast"):
                message = self.decode(data)
            else:
                heard = dgram.open(data, peer)
                message = codec.decode(heard.frame, None, self.options.max_frame)
                dgram.check(message, heard)
                if message.from_server and heard.cluster is None and not heard.sealed:
                    # Plain, yet it claims a server's standing: an operator's
                    # ClusterStatusRequest, which must carry the cluster key's MAC.
                    self._check_operator_mac(heard.frame)
        except RemoteProtocolError as exc:
            self.drops.count(exc.reason, peer, f"{channel}: {exc}")
            return
        except DatagramRefused as exc:
            self.drops.count(exc.reason, peer, f"{channel}: {exc.detail}")
            return
        if not self._accepts_datagram(message, peer, channel):
            return
        chooser = self.datagram_filter
        if heard is not None and chooser is not None and not chooser(message, peer, heard):
            return
        self.dispatch(message, peer)

    def _check_operator_mac(self, frame: bytes) -> None:
        """An operator's frame carries the MAC of the current key, or during a rotation of
        the other one (the operator may hold either); RemoteProtocolError if neither."""
        opts = self.options
        try:
            codec.decode(frame, opts.cluster_key, opts.max_frame)
        except RemoteProtocolError:
            if opts.other_cluster_key is None:
                raise
            codec.decode(frame, opts.other_cluster_key, opts.max_frame)

    def _group_datagram(self, data: bytes, peer: str, channel: str) -> None:
        """A multicast datagram of a secure client: a room frame sealed under a key our
        leader granted us (or held until it does), or a plain lobby frame."""
        assert self.room_keys is not None
        try:
            message = self.room_keys.open(data, peer)
        except RemoteProtocolError as exc:
            self.drops.count(exc.reason, peer, f"{channel}: {exc}")
            return
        except DatagramRefused as exc:
            self.drops.count(exc.reason, peer, f"{channel}: {exc.detail}")
            return
        if message is None:  # it waits for its key: counted if that does not come in time
            if self._hold_timer is None:
                self._hold_timer = self.loop.call_later(HOLD_SECONDS, self._expire_held)
            return
        if self._accepts_datagram(message, peer, channel):
            self.dispatch(message, peer)

    def _expire_held(self) -> None:
        self._hold_timer = None
        if self.room_keys is not None:
            self.room_keys.expire()
            if self.room_keys.held:
                self._hold_timer = self.loop.call_later(HOLD_SECONDS, self._expire_held)

    def _on_grant(self, grant: RoomKeyGrant, src: str) -> None:
        """A room key from a server of our cluster, over its encrypted session (only
        a certified server's session may carry it: limits.SERVER_FRAMES)."""
        keys = self.room_keys
        if keys is None or self.known_server is None or not self.known_server(src):
            self.drops.count("unexpected-grant", src, f"room key for {grant.room!r}")
            return
        try:
            ready = keys.install(grant)
        except CryptoError as exc:
            self.drops.count("bad-grant", src, f"room key for {grant.room!r}: {exc}")
            return
        for data, peer in ready:  # frames that came before their key
            self._group_datagram(data, peer, "multicast held")

    def _accepts_datagram(self, message: Message, peer: str, channel: str) -> bool:
        refused = self.datagram_policy.refusal(message, peer, channel, self.loop.time())
        if refused is None:
            return True
        self.drops.count(refused[0], peer, f"{channel}: {refused[1]}")
        return False

    # -- inbound connections ------------------------------------------------------
    def admit(self, session: FramedConnection) -> bool:
        """A connection came in: within the caps per source host and in total?"""
        refused = self.caps.admit(session.host)
        if refused is not None:
            self.drops.count(refused, session.socket_peer, "connection closed at once")
            return False
        session.capped = True
        self.inbound.add(session)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self._sweep_period(), self._sweep)
        return True

    def _sweep_period(self) -> float:
        opts = self.options
        return max(
            0.05, min(SWEEP_PERIOD, opts.register_timeout / 4, opts.session_idle_timeout / 4)
        )

    def _sweep(self) -> None:
        """Close inbound sessions that never registered in time, or went silent."""
        self._sweeper = None
        now = self.loop.time()
        register_by = now - self.options.register_timeout
        idle_since = now - self.options.session_idle_timeout
        for session in list(self.inbound):
            if session.closed:
                continue
            if not session.established and session.opened < register_by:
                session.close_for("handshake-timeout", "no Noise handshake in time")
            elif not session.registered and session.opened < register_by:
                session.close_for("register-timeout", "no Register in time")
            elif session.last_frame < idle_since and not session.server_peer:
                session.close_for("idle-timeout", "no frame in time")
        if self.inbound:
            self._sweeper = self.loop.call_later(self._sweep_period(), self._sweep)

    def allow_handshake(self, session: FramedConnection) -> bool:
        """A handshake costs the responder two DH: bounded per source host (rate limits on)."""
        if self.security is None or self.limits is None:
            return True
        if self.limits.allow_host(session.host, "handshake", self.loop.time()):
            return True
        session.close_for("handshake-limited", "too many handshakes from this host")
        return False

    def adopt(self, session: FramedConnection) -> None:
        """An inbound session said who it is: answer that peer over it unless we have one."""
        assert session.peer_addr is not None
        current = self.sessions.get(session.peer_addr)
        if current is None or current.closed:
            self.sessions[session.peer_addr] = session

    def forget(self, session: FramedConnection) -> None:
        self.inbound.discard(session)
        if session.capped:
            session.capped = False
            self.caps.release(session.host)
        if session.peer_addr is not None and self.sessions.get(session.peer_addr) is session:
            del self.sessions[session.peer_addr]

    # -- sending ----------------------------------------------------------------
    def mark_dirty(self, session: FramedConnection) -> None:
        if not self._dirty:
            self.loop.call_soon(self._flush_outboxes)
        self._dirty.append(session)

    def _flush_outboxes(self) -> None:
        dirty, self._dirty = self._dirty, []
        for session in dirty:
            try:
                session.flush_outbox()
            except Exception:
                logger.exception("writing to %s failed", session.label)
                session.abort()

    def decode(self, data: bytes) -> Message:
        """A datagram's frame; raises a RemoteProtocolError subclass if we cannot accept it."""
        if self.datagram_cache is not None and type(data) is bytes:
            return self.datagram_cache.decode(data)
        return codec.decode(data, self.options.cluster_key, self.options.max_frame)

    def decode_stream(self, data: bytes) -> Message:
        """A frame from a TCP session (inside Noise: no signature to check)."""
        if self.decode_cache is not None and type(data) is bytes:
            return self.decode_cache.decode(data)
        return codec.decode(data, self.stream_key, self.options.max_frame)

    def encode(self, message: Message) -> bytes:
        """A datagram's frame (signed with the cluster key when one is set)."""
        return codec.encode(message, self.options.cluster_key)

    def encode_datagram(self, message: Message, addr: str | None = None) -> bytes:
        """``message`` as a unicast or discovery datagram to ``addr`` (None: a broadcast).

        A server seals what goes to members (a server's Discover, or an address that proved
        the secret or that our node knows as a server) and signs the rest for clients; a
        client's requests go plain and their nonces are remembered (replies must echo one).
        """
        dgram = self.dgram
        if dgram is None:
            return self.encode(message)
        if isinstance(dgram, ClientDatagrams):
            dgram.sent(message)
            # Plain; with the cluster key (an operator's `tchat status`) the codec MACs it,
            # which is what a ClusterStatusRequest needs to be answered in full.
            return self.encode(message)
        frame = codec.encode(message, None)
        to_member = (
            (type(message) is Discover and message.role == "server")
            or (addr is not None and dgram.is_member(addr))
            or (addr is not None and self.known_server is not None and self.known_server(addr))
        )
        try:
            return dgram.seal(frame) if to_member else dgram.sign(frame)
        except (ValueError, OverflowError) as exc:
            # Past one UDP payload with its envelope (or a spent counter): not sent at all.
            self.drops.count(
                "too-big-to-send", addr or "broadcast", f"{type(message).__name__}: {exc}"
            )
            return b""

    def send(self, addr: str, message: Message) -> None:
        """Unicast over the session to ``addr``, opening one if needed; failures drop the frame."""
        if type(message) is Welcome and self.room_sealer is not None:
            self.room_sealer.forget(addr)  # a new session: its room keys go to it again
        if addr == self._addr:
            self.loop.call_soon(self.dispatch, message, addr)
            return
        if self.signer is not None and type(message) is Register:
            self._send_login(addr, message)
            return
        found = self._encoded.get(id(message))
        if found is not None and found[0] is message:
            data = found[1]
        else:
            data = codec.frame(codec.encode(message, self.stream_key))
            if len(self._encoded) >= ENCODED_FRAMES:
                del self._encoded[next(iter(self._encoded))]  # the oldest
            self._encoded[id(message)] = (message, data)
        if len(data) - 4 > self.options.max_frame:
            # The peer would hang up on it (oversized) and we would resend it forever.
            self.drops.count("too-big-to-send", addr, f"{type(message).__name__}: {len(data)} B")
            return
        session = self.sessions.get(addr)
        if session is None or session.closed:
            stranger = self.serving and not (
                self.known_server is not None and self.known_server(addr)
            )
            # A new leader announces itself to clients that have no session with it yet:
            # one small datagram each, which they take only from a server they know.
            if isinstance(message, DATAGRAM_REPLIES) or (stranger and type(message) is NewLeader):
                try:
                    host, port = split_addr(addr)
                except ValueError:
                    self.drops.count("bad-address", addr, "cannot answer")
                    return
                self.send_raw_datagram(self.encode_datagram(message, addr), host, port)
                return
            if stranger:
                # A client's session is gone: it notices the gap and comes back on its own.
                self.drops.count("no-session", addr, type(message).__name__)
                return
            session = self._connect(addr)
            if session is None:
                return
        self.sent_frames += 1
        session.write(data)

    def _send_login(self, addr: str, register: Register) -> None:
        """A login is signed for the session it goes out on, once that session's
        binding is known: it waits for the server's Challenge there."""
        session = self.sessions.get(addr)
        if session is None or session.closed:
            session = self._connect(addr)
            if session is None:
                return
        self.sent_frames += 1
        session.send_login(register)

    def send_datagram(self, host: str, port: int, message: Message) -> None:
        """A multicast datagram: a room frame sealed under its room's key (room_keys.py)
        when we seal, anything else (the lobby's frames) as it is."""
        sealer = self.room_sealer
        if sealer is None:
            self.send_raw_datagram(self.encode(message), host, port)
            return
        if type(message) is LobbyFrame or type(message) is LobbyBeat:
            try:
                self.send_raw_datagram(sealer.sign_lobby(message), host, port)
            except ValueError as exc:  # past one UDP datagram: clients repair over TCP
                self.drops.count("too-big-to-send", f"{host}:{port}", f"lobby: {exc}")
            return
        if type(message) is not RoomFrame:
            self.send_raw_datagram(self.encode(message), host, port)
            return
        grants = sealer.grants
        try:
            data = sealer.seal(message)
        except (ValueError, OverflowError, CryptoError) as exc:
            # Never sent plain: its members repair the gap over their sessions.
            self.drops.count("unsealed-room", f"{host}:{port}", f"not sent: {exc}")
            return
        if sealer.grants != grants:
            self._flush_outboxes()  # the grants go out before the frame they open
        self.send_raw_datagram(data, host, port)

    def send_raw_datagram(self, data: bytes, host: str, port: int) -> None:
        if self.udp is None or not data:
            return
        try:
            self.udp.sendto(data, (host, port))
        except OSError as exc:
            logger.debug("datagram to %s:%s failed: %s", host, port, exc)

    def _connect(self, addr: str) -> FramedConnection | None:
        try:
            host, port = split_addr(addr)
        except ValueError:
            self.drops.count("bad-address", addr, "cannot send")
            return None
        session = FramedConnection(self, addr, outbound=True)
        self.sessions[addr] = session
        task = self.loop.create_task(self._open(session, host, port))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return session

    async def _open(self, session: FramedConnection, host: str, port: int) -> None:
        try:
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: session, host, port, local_addr=(self.options.host, 0)
                ),
                self.options.connect_timeout,
            )
        except (TimeoutError, OSError) as exc:
            # The core retransmits what matters; the next Send reconnects.
            self.connect_failures += 1
            logger.debug(
                "connect to %s:%s failed (%s): %d frame(s) dropped",
                host,
                port,
                exc,
                len(session.pending),
            )
            session.pending.clear()
            session.closed = True
            self.forget(session)
