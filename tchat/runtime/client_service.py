"""ClientService: a user's client node on the network, for the Textual UI and headless client.

Longer than 400 lines: it is the one place where a client's pieces meet (the core node,
the transport with its Noise trust and pins, the identity that signs logins, multicast,
discovery and the restart after a core failure); each is a module of its own already.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from tchat.core.client import ClientNode
from tchat.core.client_states import ClientState
from tchat.core.config import ClientConfig
from tchat.core.effects import (
    ChatDelivered,
    ClientEvent,
    ClusterChoiceNeeded,
    ConnectionChanged,
    Deliver,
    DiscoveryHint,
    Effect,
    Failed,
    LeaderLearned,
    OpFailed,
    Ready,
    Sent,
)
from tchat.core.messages import (
    DiscoverReply,
    Dot,
    Epoch,
    Logout,
    Message,
    Operation,
    password_problem,
)
from tchat.core.status import ClientStatus
from tchat.crypto.identity import load_or_create_identity, sign_binding
from tchat.crypto.known_clusters import KeyChanged
from tchat.runtime import multicast
from tchat.runtime.cluster_choice import ClusterChoice
from tchat.runtime.datagram_auth import ClientDatagrams
from tchat.runtime.driver import NodeDriver
from tchat.runtime.multicast import MulticastGroups
from tchat.runtime.options import NetOptions, warn_insecure
from tchat.runtime.secure import WireSecurity, pinned_trust
from tchat.runtime.transport import Transport

logger = logging.getLogger(__name__)

ClientListener = Callable[[Any], None]  # receives tchat.core.effects.ClientEvent
# A session whose core raised starts over at most this often per service: a bug that hits every
# session (a poisoned frame replayed at each welcome) ends in a Failed, not a restart loop.
MAX_RESTARTS = 5


class ClientService:
    """Runs a ClientNode inside the caller's event loop; never prints."""

    def __init__(
        self,
        options: NetOptions,
        name: str,
        listener: ClientListener | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options
        self.name = name
        self.rng = rng or random.Random()
        self.client_id = uuid.uuid4().hex
        self.identity = b""  # the raw public key of our identity, once loaded
        self.transport: Transport | None = None
        self.groups: MulticastGroups | None = None
        self.driver: NodeDriver | None = None
        self.node: ClientNode | None = None
        self.multicast = False  # rooms arrive by multicast (else over the session)
        self.multicast_detail = ""
        self._listeners: list[ClientListener] = [listener] if listener else []
        self._effect_listeners: list[Callable[[Effect], None]] = []
        self._acked: dict[int, asyncio.Future[str]] = {}
        self._closed: asyncio.Future[str] | None = None
        self._submitted: dict[int, float] = {}  # cmid -> monotonic time, until acknowledged
        # Smoothed time from submit to the leader's ack (seconds): the round trip a user
        # feels, replication included. None until the first ack.
        self.rtt: float | None = None
        # The discovery watch: a hint for the user when no server answers for a while.
        self._answered = False
        self._searching_since = 0.0
        self._hint_timer: asyncio.TimerHandle | None = None
        self.restarts = 0  # sessions started over after the core raised
        self._restart: asyncio.Task[None] | None = None
        self._stopping = False
        self.security: WireSecurity | None = None
        self.key_changed: KeyChanged | None = None
        self.choice: ClusterChoice | None = None  # an unpinned client's pick of a cluster
        self._closing: asyncio.Task[None] | None = None
        self.password = ""  # --password-prompt's, until a login is welcomed
        self._earlier_drops: dict[str, int] = {}  # refusals counted before a restart

    @property
    def fingerprint(self) -> str:
        """The pinned cluster key's fingerprint ("" before the first session, or --insecure)."""
        return self.security.fingerprint if self.security is not None else ""

    @property
    def addr(self) -> str:
        return self.transport.addr if self.transport is not None else ""

    @property
    def connection(self) -> str:
        """ "multicast" or "unicast": how this client receives room messages."""
        return "multicast" if self.multicast else "unicast"

    def status(self) -> ClientStatus:
        """A snapshot of the session for a UI: it reads nothing else of the node."""
        node = self.node
        if node is None:  # starting, or starting over
            return ClientStatus()
        return ClientStatus(
            state=node.state.name,
            leader_id=node.leader_id,
            leader_addr=node.leader_addr or "",
            epoch=str(node.epoch) if node.leader_id else "",
            pending=len(node.pending),
            rtt_ms=self.rtt * 1000 if self.rtt is not None else None,
            delivery=self.connection,
            clock=node.clock,
            drops=tuple(self.drop_counts().items()),
        )

    def drop_counts(self) -> dict[str, int]:
        """What this client refused since it started, by reason (sorted): its core's
        counters and its transport's, with those of the sessions before a restart."""
        counts = dict(self._earlier_drops)
        for source in self._live_drops():
            for reason, n in source.items():
                counts[reason] = counts.get(reason, 0) + n
        return dict(sorted(counts.items()))

    def _live_drops(self) -> list[dict[str, int]]:
        live = []
        node = self.node
        if node is not None:
            live.append(getattr(node, "counters", {}))
        if self.transport is not None:
            live.append(self.transport.drops.counts)
        return live

    def add_listener(self, listener: ClientListener) -> None:
        """``listener(event)`` for every ClientEvent the node delivers."""
        self._listeners.append(listener)

    def add_effect_listener(self, listener: Callable[[Effect], None]) -> None:
        self._effect_listeners.append(listener)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        opts = self.options
        if opts.insecure:
            warn_insecure("client")
        elif self.security is None:
            trust = pinned_trust(cluster_label(opts), opts.cluster)
            self.security = WireSecurity(trust)
            self.security.on_key_changed = self._on_key_changed
        self.transport = Transport(
            opts, self._on_message, shared_decode=True, security=self.security
        )
        key = load_or_create_identity(opts.identity)
        self.identity = key.public_raw
        # The password (--password-prompt) goes with each login until one is welcomed: from
        # then on this machine's key is the account's, and the password is forgotten.
        self.password = opts.password
        self.transport.signer = lambda register, binding: dataclasses.replace(
            register,
            identity=self.identity,
            proof=sign_binding(key, binding, register.name),
            password=self.password if binding and self.security is not None else "",
        )
        await self.transport.start()
        dgram = self.transport.dgram
        if isinstance(dgram, ClientDatagrams) and self.security is not None:
            dgram.current_epoch = self._current_epoch
            self.choice = ClusterChoice(
                self.security.trust, self._on_message, self._ask_cluster, self.transport.drops
            )
            self.transport.datagram_filter = self.choice.offer
            self.choice.key_changed = self._on_key_changed
            self.choice.pinned = self._notify
            dgram.on_foreign = self.choice.foreign
        if opts.multicast:
            self.multicast = await multicast.probe(opts.host, opts.multicast_base)
            self.multicast_detail = (
                "multicast works on this interface"
                if self.multicast
                else f"multicast probe on {opts.host} failed: rooms come over the session"
            )
        else:
            self.multicast_detail = "multicast disabled: rooms come over the session"
        (logger.info if self.multicast else logger.warning)("%s", self.multicast_detail)
        self.groups = MulticastGroups(self.transport) if self.multicast else None
        config = ClientConfig(
            name=self.name,
            client_id=self.client_id,
            addr=self.transport.addr,
            timing=opts.timing,
            multicast=self.multicast,
            lobby=opts.lobby,
            wall_offset=time.time() - loop.time(),
            identity=self.identity,
        )
        self.node = ClientNode(config, self.rng)
        self.transport.known_server = self._is_server
        self.driver = NodeDriver(self.node, self.transport, None, self.groups)
        self.driver.listeners.append(self._on_effect)
        self.driver.stopped.add_done_callback(self._on_driver_stopped)
        self.driver.start()
        self._watch_discovery()

    # -- fail-stop ------------------------------------------------------------------
    def _on_key_changed(self, exc: KeyChanged) -> None:
        """A server presented another cluster key than the pinned one: stop, say why and
        how to check; talk to nobody (the impostor, or a re-keyed cluster) any more."""
        if self.key_changed is not None or self._stopping:
            return
        self.key_changed = exc
        self._stopping = True
        logger.critical("%s", exc)
        self._emit(Failed(str(exc)))
        task = asyncio.get_running_loop().create_task(self.close())
        self._closing = task  # referenced until done

    def _on_driver_stopped(self, _done: asyncio.Future[str]) -> None:
        """The core raised (the driver stopped it): the node is half-changed and must go.
        Its operations not yet acknowledged fail visibly; a new node logs in under the same
        name once the leader has dropped the old session (its client timeout)."""
        driver, node = self.driver, self.node
        if driver is None or driver.failure is None or self._stopping or self._restart:
            return
        pending = sorted(getattr(node, "pending", {}) or {})
        reason = f"the client failed ({driver.failure}); the session starts over"
        for cmid in pending:
            self._emit(OpFailed(cmid, reason))
            self._submitted.pop(cmid, None)
            future = self._acked.pop(cmid, None)
            if future is not None and not future.done():
                future.set_exception(ConnectionError(reason))
        if self.restarts >= MAX_RESTARTS:
            logger.critical("client core failed %d times: giving up", self.restarts + 1)
            self._emit(Failed(f"the client failed {self.restarts + 1} times since it started"))
            return
        self.restarts += 1
        # Nothing to join again: rooms are the account's, and the new session's Welcome
        # lists them (joining the old node's rooms undid a /leave of another terminal's).
        logger.error("%s (restart %d of at most %d)", reason, self.restarts, MAX_RESTARTS)
        self._emit(ConnectionChanged(ClientState.DISCOVERING.value, reason))
        self._restart = asyncio.get_running_loop().create_task(self._start_over())

    async def _start_over(self) -> None:
        await self.close()
        self._earlier_drops = self.drop_counts()  # the new node and transport start at 0
        self.transport = self.groups = self.driver = None
        self.node = None
        timing = self.options.timing
        # The old session keeps our name at the leader until its client timeout, but a
        # login with our own key is another session of ours, admitted at once: only a short
        # pause, so that a node failing at every start does not spin.
        await asyncio.sleep(2 * timing.client_heartbeat_interval)
        if self._stopping:
            return
        self.client_id = uuid.uuid4().hex  # a new session: the old one's cmids stay its own
        try:
            await self.start()
        except Exception as exc:
            logger.exception("starting the session over failed")
            self._emit(Failed(f"cannot start the session over: {exc}"))
        finally:
            self._restart = None

    def _emit(self, event: ClientEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("client listener failed")

    def _current_epoch(self) -> Epoch | None:
        """The epoch our node follows: a NewLeader datagram below it is a replay."""
        return self.node.epoch if self.node is not None else None

    def _ask_cluster(self, event: ClusterChoiceNeeded) -> None:
        """Several clusters answered and none is pinned: the user picks (``choose_cluster``)."""
        self._answered = True  # servers did answer: no "nobody answered" hint over the choice
        self._notify(event)

    def choose_cluster(self, prefix: str) -> str | None:
        """Follow (and pin) the listed cluster whose fingerprint starts with ``prefix``;
        its fingerprint, or None if no single listed cluster matches."""
        return self.choice.choose(prefix) if self.choice is not None else None

    def _is_server(self, addr: str) -> bool:
        """A server of our cluster as our node knows it: whose NewLeader datagrams we take."""
        node = self.node
        return node is not None and (addr == node.leader_addr or addr in node.servers.values())

    def _on_message(self, message: Message, src: str) -> None:
        if type(message) is DiscoverReply:
            self._answered = True
        if self.driver is not None:
            self.driver.on_message(message, src)

    # -- the discovery watch ----------------------------------------------------------
    def _watch_discovery(self) -> None:
        """(Re)arm the hint: looking for servers starts now."""
        delay = self.options.discovery_hint
        if delay <= 0 or self._hint_timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._answered = False
        self._searching_since = loop.time()
        self._hint_timer = loop.call_later(delay, self._hint_due)

    def _hint_due(self) -> None:
        self._hint_timer = None
        if self._answered or self.driver is None:
            return
        hint = discovery_hint(
            self.options, self.addr, asyncio.get_running_loop().time() - self._searching_since
        )
        logger.warning("%s", hint.text)
        self._notify(hint)

    def _notify(self, event: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("client listener failed")

    def _on_effect(self, effect: Effect) -> None:
        for listener in self._effect_listeners:
            listener(effect)
        if not isinstance(effect, Deliver):
            return
        event = effect.event
        if type(event) is ChatDelivered:  # the common case, once per message received
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:
                    logger.exception("client listener failed")
            return
        if isinstance(event, Ready | LeaderLearned):
            self._answered = True
        if isinstance(event, Ready):
            self.password = ""  # this machine's key is the account's now
        elif isinstance(event, ConnectionChanged) and event.state == "discovering":
            self._watch_discovery()  # the leader is gone: looking again
        if isinstance(event, Sent):
            sent_at = self._submitted.pop(event.cmid, None)
            if sent_at is not None:
                sample = time.monotonic() - sent_at
                self.rtt = sample if self.rtt is None else 0.8 * self.rtt + 0.2 * sample
            future = self._acked.pop(event.cmid, None)
            if future is not None and not future.done():
                future.set_result(event.entry_id)
        elif (
            isinstance(event, ConnectionChanged)
            and event.state == "closed"
            and self._closed is not None
            and not self._closed.done()
        ):
            # The leader's UserOffline for us closes the node (it may not ack the Logout).
            self._closed.set_result(event.detail)
        self._notify(event)

    # -- commands -----------------------------------------------------------------
    def submit(self, op: Operation) -> int:
        """Queue ``op`` for the leader; it is resent until acknowledged. Returns its cmid."""
        assert self.driver is not None and self.node is not None, "start() first"
        now = asyncio.get_running_loop().time()
        cmid, _effects = self.driver.call(self.node.submit, op, now, time.time())
        if len(self._submitted) < 10_000:  # bounded even if acks never come
            self._submitted[int(cmid)] = time.monotonic()
        return int(cmid)

    def set_password_problem(self, password: str) -> str | None:
        """Why ``/password`` cannot send ``password``, or None: never over --insecure (the
        session is plaintext), and 8..1024 bytes (the leader says so too)."""
        if self.security is None:
            return (
                "a password travels only over an encrypted session: this client runs "
                "--insecure, so /password is refused"
            )
        return password_problem(password)

    def acked(self, cmid: int) -> asyncio.Future[str]:
        """A future resolved with the entry ID once operation ``cmid`` is acknowledged."""
        future = self._acked.get(cmid)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._acked[cmid] = future
        return future

    def request_keys(self) -> int:
        """Ask for the account's keys (``/devices``); a KeysListed event answers."""
        assert self.driver is not None and self.node is not None, "start() first"
        now = asyncio.get_running_loop().time()
        request_id, _effects = self.driver.call(self.node.request_keys, now)
        return int(request_id)

    def request_rooms(self) -> int:
        """Ask for the cluster's room directory; it arrives as a RoomDirectory event."""
        assert self.driver is not None and self.node is not None, "start() first"
        now = asyncio.get_running_loop().time()
        request_id, _effects = self.driver.call(self.node.request_rooms, now)
        return int(request_id)

    def request_history(
        self,
        room: str | None,
        peer: str | None,
        before: Dot | str | None = None,
        limit: int = 50,
    ) -> int:
        """Ask for chat entries older than ``before`` (an entry ID or Dot); the answer arrives
        as a HistoryLoaded event."""
        assert self.driver is not None and self.node is not None, "start() first"
        now = asyncio.get_running_loop().time()
        before_id = str(before) if before is not None else None
        request_id, _effects = self.driver.call(
            self.node.request_history, room, peer, before_id, limit, now
        )
        return int(request_id)

    async def stop(self, timeout: float = 2.0) -> bool:
        """Log out (waiting, bounded, for the leader's ack) and close. True if acknowledged."""
        ok = False
        self._stopping = True
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        if self.driver is not None and self.node is not None and self._can_log_out():
            self._closed = asyncio.get_running_loop().create_future()
            try:
                cmid = self.submit(Logout())
                done, _ = await asyncio.wait(
                    {self.acked(cmid), self._closed},
                    timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                ok = bool(done)
                if not ok:
                    logger.warning("logout not acknowledged within %.1f s", timeout)
            except Exception:
                logger.exception("logout failed")
            await asyncio.sleep(0)
        await self.close()
        return ok

    def _can_log_out(self) -> bool:
        """Only a registered session has something to log out of."""
        state = getattr(getattr(self.node, "state", None), "value", "")
        return bool(getattr(self.node, "welcomed_once", True)) and state not in (
            "failed",
            "closed",
        )

    async def close(self) -> None:
        if self._hint_timer is not None:
            self._hint_timer.cancel()
            self._hint_timer = None
        if self.choice is not None:
            self.choice.close()
        if self.driver is not None:
            self.driver.close()
        if self.groups is not None:
            self.groups.close()
        if self.transport is not None:
            await self.transport.close()


def cluster_label(options: NetOptions) -> str:
    """The pin's name for the cluster this client finds: its discovery broadcast address."""
    return f"{options.broadcast}:{options.discovery_port}"


def discovery_hint(options: NetOptions, addr: str, waited: float) -> DiscoveryHint:
    """What a client that heard no server tried, and what the user should check."""
    broadcast = f"{options.broadcast}:{options.discovery_port}"
    tried = (broadcast, *options.servers)
    also = f" and asked {', '.join(options.servers)} directly" if options.servers else ""
    text = (
        f"no server answered for {waited:.0f}s: this client ({addr}) broadcast Discover to "
        f"{broadcast}{also}. Check that a server runs on the subnet of {options.host} with "
        f"discovery port {options.discovery_port} (--discovery-port), that --host is this "
        f"machine's address on that subnet, that the firewall lets UDP {options.discovery_port} "
        f"and the reply to {addr} through; where broadcast does not pass, name a server "
        f"with --server HOST:PORT."
    )
    return DiscoveryHint(round(waited, 3), addr, broadcast, tuple(tried), text)
