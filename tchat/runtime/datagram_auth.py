"""Who may say what by UDP: server datagrams signed for clients, sealed between servers.

A node's own UDP port and the discovery port carry three kinds of datagram (docs/PROTOCOL.md,
"Datagrams"), told apart by their first byte, which no codec frame starts with:

- ``0xD1`` **sealed**: ``0xD1 | DatagramSealer output`` (tchat/crypto/datagram.py). Server
  to server: Discover, DiscoverReply and NewLeader between members. Only a holder of the
  cluster secret seals or opens; the opener's replay window makes each one count once.
- ``0xD2`` **signed**: ``0xD2 | cluster public key (32) | sign_datagram(...)``. Server to
  client: DiscoverReply, StatusReply, NewLeader. The key in clear is what a client without
  a pin groups replies by; the certificate must verify under it, and a pinned client takes
  only its pin. Freshness comes from the body: a reply echoes a nonce this client sent
  lately, a NewLeader carries an epoch above the one the client follows.
- ``0xD4`` **vouched**: ``0xD4 | vouch (96) | the rest of a signed datagram``, from a server
  during a cluster secret rotation: the key of the other secret it holds vouches for the
  key that signs (cluster.py, ``vouch_for``), so a client pinned to it follows the new one.
- a plain codec frame: only a client's Discover and a StatusRequest (a client has no
  secret), and everything with ``--insecure``.

Every refusal raises ``DatagramRefused`` with a drop reason; the transport counts it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tchat.core import codec
from tchat.core.errors import RemoteProtocolError
from tchat.core.messages import (
    Discover,
    DiscoverReply,
    Epoch,
    Message,
    NewLeader,
    StatusReply,
    StatusRequest,
)
from tchat.crypto.certificate import CertificateCache, sign_datagram, verify_datagram
from tchat.crypto.cluster import VOUCH_SIZE, ClusterPublicKey
from tchat.crypto.datagram import DatagramOpener, DatagramSealer
from tchat.crypto.errors import CryptoError, Reason
from tchat.runtime.limits import LruTable
from tchat.runtime.ratelimit import TokenBucket
from tchat.runtime.secure import ClusterTrust, WireSecurity

KIND_SEALED = 0xD1
KIND_SIGNED = 0xD2
KIND_VOUCHED = 0xD4  # signed, by a server in a rotation: 0xD4 | vouch (96) | as 0xD2 after its kind
KEY_SIZE = 32
# A reply is fresh only if it answers a nonce we sent within this many seconds (discovery
# retries every ~0.5 s; a reply that took longer is of no use to us anyway).
NONCE_LIFETIME = 10.0
NONCES_KEPT = 64
CLUSTER_CACHES = 8  # cluster keys whose verified certificates a client keeps
SEALED_PEERS = 1024  # addresses that proved they hold the secret: we answer them sealed
# Work a stranger can cause before it is refused: an AEAD attempt (plus one HKDF for an
# unknown boot salt) per sealed datagram at a server, two Ed25519 checks per signed one at
# a client. Legitimate traffic is a few datagrams per discovery round.
SEALED_PER_HOST = (500.0, 1000.0)  # tokens per second, burst
SEALED_TOTAL = (5000.0, 10000.0)
SIGNED_TOTAL = (400.0, 800.0)
HOST_TABLE = 4096


class DatagramRefused(Exception):
    """A datagram we do not take; ``reason`` names the drop counter."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Heard:
    """An accepted datagram's frame and what authenticated it."""

    frame: bytes
    server_id: int | None = None  # the sealing or certified sender; None: unauthenticated
    cluster: ClusterPublicKey | None = None  # the signer's cluster (signed datagrams)
    sealed: bool = False


def _reason(exc: CryptoError) -> str:
    match exc.reason:
        case Reason.BAD_TAG | Reason.BAD_SIGNATURE:
            return "bad-signature"
        case Reason.REPLAY | Reason.TOO_OLD:
            return "replayed"
        case Reason.EXPIRED:
            return "expired-cert"
        case _:
            return "bad-datagram"


def _claimed_sender(message: Message) -> int | None:
    """The server ID a datagram's body says it comes from (None: it names none)."""
    match message:
        case DiscoverReply() | StatusReply():
            return message.server_id
        case NewLeader():
            return message.src
        case Discover() if message.role == "server":
            return message.server_id
    return None


class ServerDatagrams:
    """A server's datagrams: sealed to members, signed for clients; opens what comes in."""

    def __init__(self, security: WireSecurity, clock: Callable[[], float] = time.monotonic):
        creds = security.credentials
        assert creds is not None and security.trust.key is not None
        self.security = security
        self.cluster = security.trust.key
        self.sealer = DatagramSealer(creds.secret, creds.server_id)
        # Sealed with the current secret, opened with it or, during a rotation, with the
        # next one (a peer that switched already); each opener keeps its own replay windows.
        self.openers = [DatagramOpener(secret) for secret in creds.secrets]
        # Which opener verified each (sender, boot salt): a switched peer's datagrams go
        # straight to the next secret's opener, not through a failed attempt first.
        self.routes: OrderedDict[bytes, int] = OrderedDict()
        self.clock = clock
        now = clock()
        self.total = TokenBucket(*SEALED_TOTAL, now)
        self.hosts: LruTable[str, TokenBucket] = LruTable(
            HOST_TABLE, lambda _host: TokenBucket(*SEALED_PER_HOST, self.clock())
        )
        self.sealed_peers: OrderedDict[str, None] = OrderedDict()

    def is_member(self, addr: str) -> bool:
        """Whether ``addr`` proved lately that it holds the cluster secret."""
        return addr in self.sealed_peers

    def seal(self, frame: bytes) -> bytes:
        return bytes((KIND_SEALED,)) + self.sealer.seal(frame)

    def sign(self, frame: bytes) -> bytes:
        creds = self.security.credentials
        assert creds is not None
        cert = creds.current_cert(self.security.clock())
        signed = sign_datagram(creds.keys.signing_key, cert, frame)
        vouch = creds.vouch
        if vouch:
            return bytes((KIND_VOUCHED,)) + vouch + self.cluster.raw + signed
        return bytes((KIND_SIGNED,)) + self.cluster.raw + signed

    def open(self, data: bytes, peer: str) -> Heard:
        if not data:
            raise DatagramRefused("bad-datagram", "empty datagram")
        kind = data[0]
        if kind in (KIND_SIGNED, KIND_VOUCHED):
            raise DatagramRefused("udp-refused", "a signed datagram is for clients")
        if kind != KIND_SEALED:
            return Heard(data)  # plain: ``check`` takes only a client's requests
        now = self.clock()
        host = peer.rsplit(":", 1)[0]
        # Before any crypto: a flood of junk costs a token lookup each, then nothing.
        if not self.hosts.get(host).take(now) or not self.total.take(now):
            raise DatagramRefused("sealed-limited", "too many sealed datagrams")
        sender, frame = self._open(data[1:])
        self.sealed_peers[peer] = None
        self.sealed_peers.move_to_end(peer)
        if len(self.sealed_peers) > SEALED_PEERS:
            self.sealed_peers.popitem(last=False)
        return Heard(frame, sender, self.cluster, sealed=True)

    def _open(self, sealed: bytes) -> tuple[int, bytes]:
        """(sender, frame) under the first secret whose key opens it; a forgery costs one
        AEAD attempt per secret held (two at most, during a rotation)."""
        route = bytes(sealed[1:25])  # the sender and boot salt of the header
        known = self.routes.get(route)
        order = range(len(self.openers)) if known is None else (known,)
        first: CryptoError | None = None
        for index in order:
            try:
                opened = self.openers[index].open(sealed)
            except CryptoError as exc:
                if exc.reason is not Reason.BAD_TAG:
                    raise DatagramRefused(_reason(exc), f"sealed datagram: {exc}") from None
                first = first or exc
                continue
            if known is None and len(self.openers) > 1:
                self.routes[route] = index
                if len(self.routes) > SEALED_PEERS:
                    self.routes.popitem(last=False)
            return opened
        raise DatagramRefused("bad-signature", f"sealed datagram: {first}")

    def check(self, message: Message, heard: Heard) -> None:
        """The body agrees with what authenticated it."""
        if not heard.sealed:
            if isinstance(message, StatusRequest) or (
                isinstance(message, Discover) and message.role == "client"
            ):
                return
            raise DatagramRefused("unsealed", f"{type(message).__name__} not sealed")
        claimed = _claimed_sender(message)
        if claimed is not None and claimed != heard.server_id:
            raise DatagramRefused(
                "sender-mismatch", f"sealed by {heard.server_id}, claims to be {claimed}"
            )


class ClientDatagrams:
    """A client's view: only signed server datagrams, from its cluster, fresh."""

    def __init__(self, trust: ClusterTrust, clock: Callable[[], float] = time.monotonic):
        self.trust = trust
        self.clock = clock
        self.wall = time.time  # certificates expire by the wall clock
        self.caches: OrderedDict[bytes, CertificateCache] = OrderedDict()
        self.nonces: OrderedDict[int, float] = OrderedDict()
        self.budget = TokenBucket(*SIGNED_TOTAL, clock())
        # The epoch this client follows (set by its service): older NewLeaders are replays.
        self.current_epoch: Callable[[], Epoch | None] = lambda: None
        # Told of a fresh, genuine discovery reply from a cluster other than our pin.
        self.on_foreign: Callable[[ClusterPublicKey], None] | None = None

    @property
    def expected(self) -> str | None:
        """--cluster FINGERPRINT: the only cluster taken (None: the pin, or any if none)."""
        return getattr(self.trust, "expected", None)

    def sent(self, message: Message) -> None:
        """Remember the nonce of a request we send: its replies are fresh."""
        if isinstance(message, Discover | StatusRequest):
            self.nonces[message.nonce] = self.clock()
            self.nonces.move_to_end(message.nonce)
            while len(self.nonces) > NONCES_KEPT:
                self.nonces.popitem(last=False)

    def fresh(self, nonce: int) -> bool:
        sent = self.nonces.get(nonce)
        return sent is not None and self.clock() - sent <= NONCE_LIFETIME

    def open(self, data: bytes, peer: str) -> Heard:
        vouch = b""
        if data and data[0] == KIND_VOUCHED and len(data) > 1 + VOUCH_SIZE:
            # A rotating server's: the vouch, then a signed datagram's body.
            vouch = bytes(data[1 : 1 + VOUCH_SIZE])
            data = bytes((KIND_SIGNED,)) + data[1 + VOUCH_SIZE :]
        if not data or data[0] != KIND_SIGNED:
            raise DatagramRefused("unsigned", "a server datagram without a signature")
        if len(data) < 1 + KEY_SIZE:
            raise DatagramRefused("bad-datagram", "signed datagram too short")
        raw = bytes(data[1 : 1 + KEY_SIZE])
        try:
            cluster = ClusterPublicKey(raw)
        except (CryptoError, ValueError):
            raise DatagramRefused("bad-datagram", "not a cluster key") from None
        expected = self.expected
        pinned = self.trust.key
        if expected is not None:
            # --cluster names the key to take, over any pin (the user accepts a new key).
            if cluster.fingerprint != expected:
                raise DatagramRefused("unknown-cluster", f"not the --cluster {expected}")
        elif pinned is not None and all(raw != k.raw for k in self.trust.accepted):
            if not vouch:
                self._foreign(raw, data)
                raise DatagramRefused("unknown-cluster", "from a cluster other than our pin")
            return self._vouched(cluster, vouch, data)
        if not self.budget.take(self.clock()):
            raise DatagramRefused("signed-limited", "too many signed datagrams")
        if pinned is not None and any(raw == k.raw for k in self.trust.accepted):
            # The pin's certificates are the process's (every client of a load generator
            # checks each server's certificate once, as its sessions do).
            cache = self.trust.certificates(cluster)
            try:
                signed = verify_datagram(cluster, data[1 + KEY_SIZE :], self.wall(), cache)
            except CryptoError as exc:
                raise DatagramRefused(_reason(exc), f"signed datagram: {exc}") from None
            return Heard(signed.body, signed.cert.server_id, cluster)
        cache = self.caches.get(raw) or CertificateCache(cluster)
        try:
            signed = verify_datagram(cluster, data[1 + KEY_SIZE :], self.wall(), cache)
        except CryptoError as exc:
            raise DatagramRefused(_reason(exc), f"signed datagram: {exc}") from None
        # Only a key that signed something valid earns a cache slot.
        self.caches[raw] = cache
        self.caches.move_to_end(raw)
        while len(self.caches) > CLUSTER_CACHES:
            self.caches.popitem(last=False)
        return Heard(signed.body, signed.cert.server_id, cluster)

    def _vouched(self, cluster: ClusterPublicKey, vouch: bytes, data: bytes) -> Heard:
        """A datagram under a key our pin does not name, with a vouch: verified under that
        key first, then followed if a key we trust vouches for it (a rotation)."""
        if not self.budget.take(self.clock()):
            raise DatagramRefused("signed-limited", "too many signed datagrams")
        try:
            signed = verify_datagram(cluster, data[1 + KEY_SIZE :], self.wall())
        except CryptoError as exc:
            raise DatagramRefused(_reason(exc), f"vouched datagram: {exc}") from None
        if not self.trust.take_vouched(cluster, vouch):
            raise DatagramRefused("unknown-cluster", "vouched for by no key we trust")
        return Heard(signed.body, signed.cert.server_id, cluster)

    def _foreign(self, raw: bytes, data: bytes) -> None:
        """Another cluster answered a pinned client: if genuinely, freshly, tell
        ``on_foreign`` (the pinned cluster's key may have changed: the service decides)."""
        if self.on_foreign is None or not self.budget.take(self.clock()):
            return
        try:
            cluster = ClusterPublicKey(raw)
            signed = verify_datagram(cluster, data[1 + KEY_SIZE :], self.wall())
            message = codec.decode(signed.body, None)
        except (CryptoError, RemoteProtocolError, ValueError):
            return
        if isinstance(message, DiscoverReply) and self.fresh(message.nonce):
            self.on_foreign(cluster)

    def check(self, message: Message, heard: Heard) -> None:
        claimed = _claimed_sender(message)
        if claimed is None or not isinstance(message, DiscoverReply | StatusReply | NewLeader):
            raise DatagramRefused("udp-refused", f"{type(message).__name__} by datagram")
        if claimed != heard.server_id:
            raise DatagramRefused(
                "sender-mismatch", f"certified for {heard.server_id}, claims to be {claimed}"
            )
        if isinstance(message, NewLeader):
            current = self.current_epoch()
            # Strictly above: a replay of the current leader's announcement, once it died,
            # would send a discovering client back to it again and again. Discovery
            # replies (nonce-fresh) still tell it of the leader at its own epoch.
            if current is not None and message.epoch <= current:
                raise DatagramRefused("stale-epoch", f"NewLeader of epoch {message.epoch}")
        elif not self.fresh(message.nonce):
            raise DatagramRefused("stale-reply", f"{type(message).__name__} to no nonce of ours")
