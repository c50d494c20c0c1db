"""ServerService: a server node with its transport, discovery listener and SQLite store.

Longer than 400 lines: it wires one server's parts together (keys and files, the store,
the transport with its admin desk, passwords and room keys, discovery, the driver) in
the order they must start and stop; split, that order would be spread over modules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

from tchat.core.config import ServerConfig
from tchat.core.effects import DurableState, Effect, LogEvent
from tchat.core.messages import Message
from tchat.core.server import ServerNode
from tchat.core.status import ServerStatus
from tchat.crypto.cluster import (
    CLUSTER_KEY_FILE,
    ClusterSecret,
    load_cluster_secret,
    load_or_create_server_keys,
    parse_secret,
)
from tchat.crypto.keyfiles import create_private, private_dir, tighten_private_files
from tchat.runtime.admin_desk import AdminDesk
from tchat.runtime.archive import SqliteArchive
from tchat.runtime.connection import split_addr, warm_up_logins
from tchat.runtime.discovery import DiscoveryListener
from tchat.runtime.driver import NodeDriver
from tchat.runtime.options import KEY_ENV, NetOptions, data_home, default_data_dir, warn_insecure
from tchat.runtime.passwords import PasswordDesk
from tchat.runtime.room_keys import ROOMS_KEPT, LeaderRoomKeys, RoomAudience
from tchat.runtime.secure import WireSecurity
from tchat.runtime.server_status import ServerStatusReader
from tchat.runtime.store import DB_NAME, SqliteStore
from tchat.runtime.transport import Transport

logger = logging.getLogger(__name__)

SERVER_ID_META = "server_id"
MAX_SERVER_ID = 2**31
# A leader reads no more client operations while this many entries wait to be committed
# (about 0.15 s of what two cores commit), and reads them again once half are.
ADMIT_BACKLOG = 2000


class AdmissionGate:
    """Whether a leader takes client operations now: not while its backlog is long.

    Offered more than it could commit, a leader used to take in everything its sockets
    held: loop iterations of thousands of operations, the backups starved of CPU, missed
    heartbeats and elections, and seconds in which almost nothing was committed. Leaving
    the operations in the clients' sockets instead keeps every loop short and the
    committed rate at capacity; the clients' own sends wait (TCP backpressure).
    """

    def __init__(self, backlog: Callable[[], int], high: int = ADMIT_BACKLOG) -> None:
        self.backlog = backlog
        self.high = high
        self.low = high // 2
        self.open = True
        self.closings = 0  # how often it closed (for logs and tests)

    def __call__(self) -> bool:
        backlog = self.backlog()
        if self.open and backlog >= self.high:
            self.open = False
            self.closings += 1
            logger.debug("admission closed: %d entries waiting for commit", backlog)
        elif not self.open and backlog <= self.low:
            self.open = True
        return self.open


class ServerService:
    """Usable from a running loop (the dashboard) or by the daemon; never prints."""

    def __init__(self, options: NetOptions, rng: random.Random | None = None) -> None:
        self.options = options
        self.rng = rng or random.Random()
        self.transport: Transport | None = None
        self.discovery: DiscoveryListener | None = None
        self.driver: NodeDriver | None = None
        self.store: SqliteStore | None = None
        self.archive: SqliteArchive | None = None
        self.node: ServerNode | None = None
        self.data_dir: Path | None = None
        self._remembered_id: int | None = None
        self.server_id = 0
        self._listeners: list[Callable[[Effect], None]] = []
        self._stopping = False
        self._status = ServerStatusReader()
        self.security: WireSecurity | None = None
        self.passwords: PasswordDesk | None = None
        # room -> (the core's audience token, the audience built for it): see _room_audience
        self._audiences: dict[str, tuple[object, RoomAudience]] = {}

    @property
    def addr(self) -> str:
        return self.transport.addr if self.transport is not None else ""

    @property
    def drops(self) -> dict[str, int]:
        return self.transport.drops.snapshot() if self.transport is not None else {}

    def status(self) -> ServerStatus:
        """A snapshot of the node for the dashboard: it reads nothing else of the node."""
        if self.node is None:
            return ServerStatus()
        return self._status.read(self.node, asyncio.get_running_loop().time())

    def add_listener(self, listener: Callable[[Effect], None]) -> None:
        """``listener(effect)`` for every LogEvent / LeaderChanged / Stopped the node emits."""
        self._listeners.append(listener)
        if self.driver is not None:
            self.driver.listeners.append(listener)

    async def start(self) -> None:
        # Keys before sockets: no session may be accepted before we can prove who we are.
        # The data dir first: the cluster key may live there.
        self.store, durable = self._open_store()
        self.options = opts = self._with_cluster_key(self.options)
        warm_up_logins()
        self.server_id = self._server_id()
        self.security = self._security()
        self.transport = Transport(
            opts, self._on_message, rate_limited=True, serving=True, security=self.security
        )
        await self.transport.start()
        config = ServerConfig(
            server_id=self.server_id,
            addr=self.transport.addr,
            timing=opts.timing,
            multicast_base=opts.multicast_base,
            multicast_port=opts.multicast_port,
            max_rooms_per_user=opts.max_rooms_per_user,
            max_room_members=opts.max_room_members,
            hot_entries=opts.hot_entries,
            wall_offset=time.time() - asyncio.get_running_loop().time(),
        )
        self.archive = SqliteArchive(self.store.path)
        self.node = ServerNode(config, durable, self.rng, self.archive)
        node = self.node
        self.transport.admitting = AdmissionGate(lambda: node.backlog)
        self.transport.known_server = self._is_server
        if self.security is not None:
            self.transport.room_sealer = LeaderRoomKeys(
                self.security, self._room_audience, self.transport.send, self.transport.loop.time
            )
        self.driver = NodeDriver(self.node, self.transport, self.store, archive=self.archive)
        self.driver.listeners.extend(self._listeners)
        self.transport.admin = self._admin_desk()
        self.passwords = PasswordDesk(
            node,
            self.driver,
            asyncio.get_running_loop().time,
            encrypted=self.security is not None,
        )
        self.discovery = DiscoveryListener(self.transport)
        await self.discovery.start()
        self.driver.start()

    @property
    def fingerprint(self) -> str:
        """The cluster public key's fingerprint ("" with --insecure)."""
        return self.security.fingerprint if self.security is not None else ""

    def _security(self) -> WireSecurity | None:
        """The cluster secret (created in the data dir on first start), this server's own
        keys (likewise) and a fresh certificate for them; None with --insecure."""
        opts = self.options
        if opts.insecure:
            warn_insecure("server")
            return None
        # The key _with_cluster_key resolved (key file, environment, config or the data
        # dir's, in that order): one secret, whichever way it was given.
        assert self.data_dir is not None and opts.cluster_key is not None
        source = opts.key_source or "the cluster key"
        secret = ClusterSecret(
            parse_secret(opts.cluster_key.decode("ascii", "replace"), source), source
        )
        keys = load_or_create_server_keys(self.data_dir)
        following = None
        if opts.next_cluster_key is not None:
            where = opts.next_key_source or "the next cluster key"
            following = ClusterSecret(
                parse_secret(opts.next_cluster_key.decode("ascii", "replace"), where), where
            )
        security = WireSecurity.for_server(secret, keys, self.server_id, time.time, following)
        logger.info("cluster fingerprint %s", security.fingerprint)
        if following is not None:
            # Said at every start of a rotation's server: the step it is at shows in the log.
            logger.warning(
                "cluster key rotation: also accepting the next key %s (from %s); sealing and"
                " certifying with the current one %s",
                following.public_key.fingerprint,
                where,
                security.fingerprint,
            )
        return security

    def _admin_desk(self) -> Callable[[bytes, str], None] | None:
        """``tchat admin``'s desk: only with a cluster secret (an operator proves it)."""
        security, transport = self.security, self.transport
        creds = security.credentials if security is not None else None
        if creds is None or transport is None:
            return None
        secrets = creds.secrets  # the next one too, during a rotation
        desk = AdminDesk(
            lambda: secrets,
            self.server_id,
            self._leader,
            self._release_name,
            lambda data, peer: transport.send_raw_datagram(data, *split_addr(peer)),
            transport.drops,
            later=asyncio.get_running_loop().call_later,
        )
        self.add_listener(lambda effect: _tell_desk(desk, effect))
        return desk.receive

    def _leader(self) -> tuple[bool, str]:
        node = self.node
        if node is None:
            return False, ""
        return node.leadership is not None, node.leader_addr or ""

    def _release_name(self, name: str) -> str:
        """Runs on the loop, as every node step: the driver carries out its effects."""
        if self.node is None or self.driver is None:
            return "not-leader"
        outcome, _effects = self.driver.call(
            self.node.release_name, name, asyncio.get_running_loop().time()
        )
        return str(outcome)

    def _open_store(self) -> tuple[SqliteStore, DurableState]:
        opts = self.options
        if opts.data_dir is None and not opts.server_id:
            self._remembered_id = remembered_server_id(opts.host, self.rng)
        self.data_dir = opts.data_dir or default_data_dir(
            opts.server_id or self._remembered_id or 0
        )
        # The log holds every PM: readable by us alone (the umask covers new files; a dir
        # or database made by an earlier version is tightened here, with a warning).
        private_dir(self.data_dir, "data dir")
        tighten_private_files(self.data_dir)
        create_private(self.data_dir / DB_NAME)
        store = SqliteStore(self.data_dir)
        durable = store.load_meta()  # the log is read through the archive
        return store, durable

    def _with_cluster_key(self, opts: NetOptions) -> NetOptions:
        """The options with the cluster key this server runs with: the one given, else the
        data dir's (made on the first start), else none under --insecure, said loudly."""
        if opts.cluster_key is not None:
            logger.info("cluster key from %s", opts.key_source)
            return opts
        if opts.insecure:  # said loudly once, by _security
            return opts
        assert self.data_dir is not None
        secret = load_cluster_secret({}, None, self.data_dir, create=True)
        path = self.data_dir / CLUSTER_KEY_FILE
        if secret.created:
            # Said once, when it is made: the other servers need the same key to join.
            logger.warning(
                "created a cluster key in %s. Give the other servers the same key: "
                "`tchat key show --data-dir %s` prints it; pass it as %s=... in their "
                "environment or in a 0600 file named by --cluster-key-file",
                path,
                self.data_dir,
                KEY_ENV,
            )
        else:
            logger.info("cluster key from %s", path)
        key = secret.export_line().encode("ascii")
        return dataclasses.replace(opts, cluster_key=key, key_source=f"data dir {path}")

    def _server_id(self) -> int:
        store = self.store
        assert store is not None
        stored = store.get_meta(SERVER_ID_META)
        wanted = self.options.server_id
        if wanted:
            if stored and int(stored) != wanted:
                logger.warning(
                    "data dir belonged to server %s; now running as --id %s", stored, wanted
                )
            server_id = wanted
        elif stored:
            server_id = int(stored)
        elif self._remembered_id:
            server_id = self._remembered_id  # the ID its default data dir is named after
        else:
            server_id = self.rng.randrange(1, MAX_SERVER_ID)
        if stored is None or int(stored) != server_id:
            store.set_meta(SERVER_ID_META, server_id)
            store.commit()  # on the loop: the driver's commit thread does not exist yet
        return server_id

    def _is_server(self, addr: str) -> bool:
        """A server of our cluster as our node knows it: the only addresses we connect to."""
        node = self.node
        if node is None:
            return False
        return (
            addr == node.leader_addr
            or addr in node.peers.values()
            or addr in node.state.servers.values()
        )

    def _room_audience(self, room: str) -> RoomAudience | None:
        """Who ``room``'s frames go to while we lead (the room sealer's view of the core)."""
        leadership = self.node.leadership if self.node is not None else None
        if leadership is None:
            return None
        streams = leadership.streams
        token = streams.audience_token(room)
        cached = self._audiences.get(room)
        fresh = cached is not None and token is not None and cached[0] is token
        if fresh and cached is not None and cached[1].epoch == streams.epoch:
            return cached[1]  # the same object: the sealer skips its member checks
        record = streams.view.rooms.get(room)
        if record is None:
            return None
        addrs = tuple(
            session.addr
            for name in record.members
            for session in streams.live_sessions(name)
            if session.multicast
        )
        audience = RoomAudience(streams.epoch, frozenset(record.members), addrs)
        if token is not None:
            self._audiences[room] = (token, audience)
            if len(self._audiences) > ROOMS_KEPT:
                del self._audiences[next(iter(self._audiences))]  # the oldest
        return audience

    def _on_message(self, message: Message, src: str) -> None:
        if self.driver is not None:
            passwords = self.passwords
            if passwords is not None and passwords.takes(message):
                # A password never reaches the node: the desk hashes or checks it first.
                passwords.on_message(message, src)  # type: ignore[arg-type]
                return
            self.driver.on_message(message, src)

    def step_down(self) -> bool:
        """Hand leadership over now; False when the node is not running."""
        if self.node is None or self.driver is None:
            return False
        self.driver.call(self.node.step_down, asyncio.get_running_loop().time())
        return True

    async def stop(self, timeout: float = 3.0) -> None:
        """Graceful stop: leadership handed over, then sockets and store closed."""
        if self._stopping:
            return
        self._stopping = True
        driver = self.driver
        if driver is not None and self.node is not None:
            driver.call(self.node.stop, asyncio.get_running_loop().time())
            try:
                await asyncio.wait_for(asyncio.shield(driver.stopped), timeout)
            except TimeoutError:
                logger.warning("graceful stop did not finish in %.1f s", timeout)
            await asyncio.sleep(0)  # let the last Sends reach the sockets
            driver.close()
        await self.close()

    async def close(self) -> None:
        """Close everything without a handover (after stop, or on a failed start)."""
        if self.passwords is not None:
            self.passwords.close()
        if self.driver is not None:
            self.driver.close()  # waits for the commit in flight and joins the commit thread
        if self.discovery is not None:
            self.discovery.close()
        if self.transport is not None:
            await self.transport.close()
        if self.archive is not None:
            self.archive.close()
            self.archive = None
        if self.store is not None and self.driver is not None and self.driver.store_busy:
            # The commit thread is stuck on the disk and still owns the connection: leave
            # it to the process exit rather than close it under that thread.
            logger.error("not closing the store: a commit is still running")
            self.store = None
        if self.store is not None:
            try:
                self.store.close()
            except Exception:
                logger.exception("closing the store failed")
            self.store = None


def _tell_desk(desk: AdminDesk, effect: Effect) -> None:
    """A committed release (the leader's "name-released" event) answers its operator."""
    if isinstance(effect, LogEvent) and effect.kind == "name-released":
        name = dict(effect.fields).get("user")
        if isinstance(name, str):
            desk.committed(name)


def remembered_server_id(host: str, rng: random.Random) -> int:
    """The ID a server on ``host`` without ``--id`` or ``--data-dir`` had last time.

    Its data lives under that ID (README: ``~/.local/share/tchat/<id>``), so the ID has to
    be known before the data dir is: it is kept per host address beside the data dirs,
    generated on the first start. (The host's address, not its port: the default port is
    any free one, and a server that found its data by port lost it at every restart.)
    """
    path = data_home() / "server-ids" / host
    try:
        text = path.read_text().strip()
        if text.isdigit() and 0 < int(text) < MAX_SERVER_ID:
            return int(text)
        logger.warning("ignoring %s: not a server ID", path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot read %s (%s): a new server ID", path, exc)
    server_id = rng.randrange(1, MAX_SERVER_ID)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{server_id}\n")
    return server_id
