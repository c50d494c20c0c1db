"""Encrypted, authenticated TCP sessions: the Noise NX handshake, certificates and PeerAuth.

Every TCP connection starts with Noise_NX (docs/PROTOCOL.md, "Encrypted sessions"): the
connector is the initiator (no static key), the acceptor the responder, whose static key
is its X25519 server key and whose handshake payload is ``version | cluster public key |
certificate``. The initiator checks that certificate against the cluster key it trusts (a
server: its own cluster's; a client: its pin) and that the certificate's X25519 key is the
Noise static key it just authenticated. Its first transport record is its *intro*: ``0x00``
for a client, or ``0x01 | certificate | Ed25519 signature over the handshake hash`` (the
PeerAuth) for a server, which the responder checks. Only then does the session carry
frames, and it knows whether its peer is a verified server or a client.

``SecureChannel`` is sans-IO (bytes in, bytes and plaintexts out); FramedConnection drives it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tchat.crypto.certificate import (
    CERT_SIZE,
    issue_certificate,
    verify_certificate,
    verify_server_static,
)
from tchat.crypto.cluster import (
    CLUSTER_KEY_FILE,
    VOUCH_SIZE,
    ClusterPublicKey,
    ClusterSecret,
    ServerKeys,
)
from tchat.crypto.errors import CryptoError
from tchat.crypto.keyfiles import write_secret_file
from tchat.crypto.known_clusters import KeyChanged
from tchat.crypto.noise import NoiseError
from tchat.crypto.records import RecordOpener, RecordSealer
from tchat.crypto.session import PROLOGUE, NoiseInitiator, NoiseResponder
from tchat.runtime.trust import ClusterTrust, PinnedTrust, pinned_trust, verify_under_any

# Where they were before trust.py: the transport and the services import them from here.
__all__ = ["ClusterTrust", "PinnedTrust", "pinned_trust"]

logger = logging.getLogger(__name__)

PAYLOAD_VERSION = 1
PAYLOAD_SIZE = 1 + 32 + CERT_SIZE
# During a rotation a server's payload adds a vouch (cluster.py): the key of the other
# secret it holds signs the key it presents, so pinned clients follow the new key.
PAYLOAD_VOUCHED = 2
PAYLOAD_VOUCHED_SIZE = PAYLOAD_SIZE + VOUCH_SIZE
PEER_AUTH_DOMAIN = b"tchat peer auth v1\0"
INTRO_CLIENT = b"\x00"
INTRO_SERVER = 0x01
INTRO_SERVER_SIZE = 1 + CERT_SIZE + 64
# NX message 1 is 32 bytes, message 2 is 32 + 48 + the payload + 16: anything longer is
# not a handshake, and a stranger must not make us buffer more than this before it.
HANDSHAKE_RECORD_MAX = 512
CERT_RENEW_CHECK = 3600.0  # seconds between looks at whether our certificate needs renewal


def provision_cluster_secret(data_dir: Path, secret: ClusterSecret) -> None:
    """Give a server's data dir the cluster's secret (0600) before its first start: what
    an operator does by hand (scripts/cluster.sh, the benches and the test harness too)."""
    path = data_dir / CLUSTER_KEY_FILE
    if not path.exists():
        write_secret_file(path, (secret.export_line() + "\n").encode("ascii"))


class HandshakeFailed(Exception):
    """The session cannot go on; ``reason`` is the drop counter's reason."""

    def __init__(self, reason: str, detail: str, fatal: KeyChanged | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.fatal = fatal  # a changed cluster key stops a client


@dataclass
class ServerCredentials:
    """What a server proves itself with: its keys and the cluster's certificate for them."""

    secret: ClusterSecret
    keys: ServerKeys
    server_id: int
    cert: bytes
    issued: float
    # During a rotation, the other secret also accepted (docs/OPERATIONS.md): never used
    # to seal or certify, only to open and verify what a server at the other step sends.
    # The next one in step 1 (--next-cluster-key-file), the previous one in step 2
    # (--previous-cluster-key-file): which way its vouch points.
    other_secret: ClusterSecret | None = None
    other_is_previous: bool = False
    _vouch: bytes | None = None

    @property
    def vouch(self) -> bytes:
        """The other secret's vouch for the key we present (b"" outside a rotation):
        forward from the previous key (clients move their pin to ours), or back from the
        next key (clients that pinned it take ours for the run, their pin stays)."""
        if self.other_secret is None:
            return b""
        if self._vouch is None:
            self._vouch = self.other_secret.vouch_for(
                self.secret.public_key, forward=self.other_is_previous
            )
        return self._vouch

    @property
    def secrets(self) -> tuple[ClusterSecret, ...]:
        """Every secret this server accepts, the current one first."""
        return (self.secret,) if self.other_secret is None else (self.secret, self.other_secret)

    @classmethod
    def issue(
        cls, secret: ClusterSecret, keys: ServerKeys, server_id: int, now: float
    ) -> ServerCredentials:
        return cls(secret, keys, server_id, issue_certificate(secret, server_id, keys, now), now)

    def current_cert(self, now: float) -> bytes:
        """Our certificate, reissued once half its life is gone (any server holds the secret)."""
        if now - self.issued > CERT_RENEW_CHECK:
            cert = verify_certificate(self.secret.public_key, self.cert, now)
            if cert.needs_renewal(now):
                self.cert = issue_certificate(self.secret, self.server_id, self.keys, now)
            self.issued = now
        return self.cert


class WireSecurity:
    """A transport's keys and trust: what its sessions prove and what they accept."""

    def __init__(
        self,
        trust: ClusterTrust,
        credentials: ServerCredentials | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.trust = trust
        self.credentials = credentials
        self.clock = clock
        # Called with a KeyChanged: the client must stop (set by ClientService).
        self.on_key_changed: Callable[[KeyChanged], None] | None = None

    @classmethod
    def for_server(
        cls,
        secret: ClusterSecret,
        keys: ServerKeys,
        server_id: int,
        clock: Callable[[], float],
        other_secret: ClusterSecret | None = None,
        other_is_previous: bool = False,
    ) -> WireSecurity:
        credentials = ServerCredentials.issue(secret, keys, server_id, clock())
        credentials.other_secret = other_secret
        credentials.other_is_previous = other_is_previous
        also = (other_secret.public_key,) if other_secret is not None else ()
        return cls(ClusterTrust(secret.public_key, also), credentials, clock)

    @property
    def fingerprint(self) -> str:
        """The trusted cluster key's fingerprint ("" until a client pinned one)."""
        key = self.trust.key
        return key.fingerprint if key is not None else ""

    def channel(self, initiator: bool) -> SecureChannel:
        return SecureChannel(self, initiator)

    def payload(self) -> bytes:
        creds = self.credentials
        assert creds is not None and self.trust.key is not None
        cert = creds.current_cert(self.clock())
        vouch = creds.vouch
        version = PAYLOAD_VOUCHED if vouch else PAYLOAD_VERSION
        return bytes((version,)) + self.trust.key.raw + cert + vouch


class SecureChannel:
    """One session's handshake and record layer (sans-IO)."""

    def __init__(self, security: WireSecurity, initiator: bool) -> None:
        self.security = security
        self.initiator = initiator
        self.handshake: NoiseInitiator | NoiseResponder | None
        if initiator:
            self.handshake = NoiseInitiator(PROLOGUE)
        else:
            creds = security.credentials
            if creds is None:
                raise ValueError("only a server accepts sessions")
            self.handshake = NoiseResponder(creds.keys.x25519_private, PROLOGUE, security.payload())
        self.buffer = bytearray()  # handshake bytes not yet a whole record
        self.sealer: RecordSealer | None = None
        self.opener: RecordOpener | None = None
        self.established = False  # frames may flow (the intro was sent or received)
        self.peer_server: int | None = None  # the verified server ID of our peer, if a server
        self.channel_binding = b""  # the handshake hash: unique to this session

    def start(self) -> bytes:
        """The initiator's first handshake record."""
        assert isinstance(self.handshake, NoiseInitiator)
        return self.handshake.start()

    def seal(self, data: bytes) -> bytes:
        assert self.sealer is not None
        return self.sealer.seal(data)

    def feed(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """(bytes to write back, plaintexts that arrived); raises HandshakeFailed."""
        if self.handshake is None:
            assert self.opener is not None
            try:
                plain = self.opener.feed(data)
            except NoiseError as exc:
                raise HandshakeFailed("bad-record", str(exc)) from None
            if not self.established and plain:
                self._intro(plain.pop(0))
            return b"", plain
        buf = self.buffer
        buf += data
        out = b""
        while self.handshake is not None and len(buf) >= 2:
            size = int.from_bytes(buf[:2], "big")
            if size > HANDSHAKE_RECORD_MAX:
                raise HandshakeFailed("bad-record", f"handshake record of {size} bytes")
            if len(buf) < 2 + size:
                break
            # One whole record at a time (length included): the handshake keeps nothing
            # behind its last record, and what follows it goes to the opener below.
            record = bytes(buf[: 2 + size])
            del buf[: 2 + size]
            out += self._step(record)
        if self.handshake is not None:
            return out, []
        rest = bytes(buf)
        self.buffer = bytearray()
        more, plain = self.feed(rest) if rest else (b"", [])
        return out + more, plain

    def _step(self, record: bytes) -> bytes:
        hs = self.handshake
        assert hs is not None
        try:
            out, done = hs.step(record)
        except NoiseError as exc:
            raise HandshakeFailed("handshake-failed", str(exc)) from None
        if not done:
            return out
        self.channel_binding = hs.handshake_hash
        self.sealer, self.opener = hs.transport()
        self.handshake = None
        if not self.initiator:
            return out
        self._check_server(hs.remote_payload or b"", hs.remote_static)
        self.established = True
        return out + self.sealer.seal(self._my_intro())

    def _check_server(self, payload: bytes, remote_static: bytes | None) -> None:
        """The responder is a server of the cluster we trust, holding the key it claims."""
        shapes = {PAYLOAD_VERSION: PAYLOAD_SIZE, PAYLOAD_VOUCHED: PAYLOAD_VOUCHED_SIZE}
        if not payload or shapes.get(payload[0]) != len(payload):
            raise HandshakeFailed("handshake-failed", f"bad server payload ({len(payload)} B)")
        try:
            offered = ClusterPublicKey(payload[1:33])
            trust = self.security.trust
            vouched = payload[0] == PAYLOAD_VOUCHED
            if not vouched:
                trust.check(offered)  # a changed key stops us before any signature check
            # The certificate under the key offered, and for the static key the handshake
            # proved (a rogue showing a real server's certificate has not that key).
            cert = verify_server_static(
                offered,
                payload[33:PAYLOAD_SIZE],
                remote_static or b"",
                self.security.clock(),
                trust.certificates(offered),
            )
            # A rotation: a key we trust vouches for the one offered, which we then follow.
            if vouched and not trust.take_vouched(offered, payload[PAYLOAD_SIZE:]):
                trust.check(offered)
        except KeyChanged as exc:
            raise HandshakeFailed("key-changed", str(exc), exc) from None
        except CryptoError as exc:
            raise HandshakeFailed("handshake-failed", f"server certificate: {exc}") from None
        self.peer_server = cert.server_id

    def _my_intro(self) -> bytes:
        creds = self.security.credentials
        if creds is None:
            return INTRO_CLIENT
        cert = creds.current_cert(self.security.clock())
        signature = creds.keys.signing_key.sign(PEER_AUTH_DOMAIN + self.channel_binding)
        return bytes((INTRO_SERVER,)) + cert + signature

    def _intro(self, intro: bytes) -> None:
        """The responder learns who the initiator is: a client, or a server that proves it."""
        if intro == INTRO_CLIENT:
            self.established = True
            return
        if len(intro) != INTRO_SERVER_SIZE or intro[0] != INTRO_SERVER:
            raise HandshakeFailed("handshake-failed", f"bad session intro ({len(intro)} B)")
        trust = self.security.trust
        assert trust.key is not None
        try:
            cert = verify_under_any(trust, intro[1 : 1 + CERT_SIZE], self.security.clock())
            key = Ed25519PublicKey.from_public_bytes(cert.ed25519_public)
            key.verify(intro[1 + CERT_SIZE :], PEER_AUTH_DOMAIN + self.channel_binding)
        except CryptoError as exc:
            raise HandshakeFailed("handshake-failed", f"peer certificate: {exc}") from None
        except (InvalidSignature, ValueError):
            raise HandshakeFailed(
                "handshake-failed", "PeerAuth signature does not verify"
            ) from None
        self.peer_server = cert.server_id
        self.established = True
