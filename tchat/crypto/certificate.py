"""Server certificates (the cluster vouches for a server's keys) and datagrams clients verify.

Certificate, version 1: 153 bytes, big-endian::

    0    u8    version (1)
    1    u64   server_id (0 .. 2**53-1, the core's MAX_INT)
    9    32    X25519 public key (the server's Noise static key)
    41   32    Ed25519 public key (signs the server's datagrams for clients)
    73   u64   issued_at, Unix seconds
    81   u64   not_after, Unix seconds (issued_at < not_after <= issued_at + MAX_LIFETIME)
    89   64    Ed25519 signature by the cluster signing key over
               b"tchat server cert v1\\0" + bytes 0..88

Any server holding the secret can issue its own certificate at start and renew it
(``needs_renewal``), so the default lifetime is short: a server key stolen without the
secret is usable only until its certificate expires. Clients judge expiry on their own clock,
with ``CLOCK_SKEW`` of slack for a certificate issued "in the future".

Signed datagram (discovery replies, NewLeader, status replies: server frames that a
client, who has no secret, must verify)::

    0    u8    version (1)
    1    u16   length of the certificate (153 for version 1)
    3    cert  the sender's certificate
    ..   body  the payload (the caller's encoded frame)
    -64  64    Ed25519 signature by the certificate's key over
               b"tchat signed datagram v1\\0" + every byte before the signature

A client that completed a Noise handshake checks the server's certificate (sent in the
handshake payload) with ``verify_server_static``: certified by the pinned key *and* for
the static key the handshake proved.

``verify_datagram`` checks the certificate against the pinned cluster key, then the
signature against the certificate's key, and returns the certificate with the body: the
caller takes the sender from ``cert.server_id`` (never from the body). A signature does
not stop replay: the body must carry what makes it fresh (the epoch for NewLeader, the
client's nonce echoed in a discovery or status reply). Every refusal is a CryptoError.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tchat.core.schema import MAX_INT
from tchat.crypto.cluster import ClusterPublicKey, ClusterSecret, ServerKeys
from tchat.crypto.errors import CryptoError, Reason

CERT_VERSION = 1
CERT_DOMAIN = b"tchat server cert v1\0"
_CERT_BODY = struct.Struct(">BQ32s32sQQ")
CERT_SIZE = _CERT_BODY.size + 64
DEFAULT_LIFETIME = 7 * 24 * 3600.0
MAX_LIFETIME = 366 * 24 * 3600
CLOCK_SKEW = 600

SIGNED_VERSION = 1
SIGNED_DOMAIN = b"tchat signed datagram v1\0"
_SIGNED_HEAD = struct.Struct(">BH")
# The largest UDP payload over IPv4; a signed datagram never needs more.
MAX_SIGNED_DATAGRAM = 65507
SIGNED_OVERHEAD = _SIGNED_HEAD.size + CERT_SIZE + 64


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """A verified certificate; ``blob`` is its encoding, to send along with signed datagrams."""

    version: int
    server_id: int
    x25519_public: bytes
    ed25519_public: bytes
    issued_at: int
    not_after: int
    blob: bytes

    def needs_renewal(self, now: float) -> bool:
        """Whether half the lifetime has passed (the server then issues a fresh one)."""
        return now >= (self.issued_at + self.not_after) / 2


def issue_certificate(
    secret: ClusterSecret,
    server_id: int,
    keys: ServerKeys,
    now: float,
    lifetime: float = DEFAULT_LIFETIME,
) -> bytes:
    """A certificate blob for ``server_id``'s ``keys``, valid from ``now`` for ``lifetime`` s."""
    if not 0 <= server_id <= MAX_INT:
        raise ValueError(f"a server id is in [0, 2**53), not {server_id}")
    if not 1 <= lifetime <= MAX_LIFETIME:
        raise ValueError(f"a certificate lives 1 s .. {MAX_LIFETIME} s, not {lifetime}")
    issued = int(now)
    body = _CERT_BODY.pack(
        CERT_VERSION,
        server_id,
        keys.x25519_public,
        keys.ed25519_public,
        issued,
        issued + int(lifetime),
    )
    return body + secret.signing_key.sign(CERT_DOMAIN + body)


def verify_certificate(
    cluster_public_key: ClusterPublicKey, blob: bytes, now: float
) -> ServerCertificate:
    """The certificate in ``blob`` if the cluster signed it and it is valid at ``now``.

    Raises CryptoError (MALFORMED, UNKNOWN_VERSION, BAD_SIGNATURE, EXPIRED) and nothing else.
    """
    blob = bytes(blob)
    if not blob:
        raise CryptoError("empty certificate")
    if blob[0] != CERT_VERSION:
        raise CryptoError(f"certificate version {blob[0]} is unknown", Reason.UNKNOWN_VERSION)
    if len(blob) != CERT_SIZE:
        raise CryptoError(f"a certificate is {CERT_SIZE} bytes, not {len(blob)}")
    body, signature = blob[: _CERT_BODY.size], blob[_CERT_BODY.size :]
    version, server_id, x_pub, ed_pub, issued, not_after = _CERT_BODY.unpack(body)
    if server_id > MAX_INT:
        raise CryptoError(f"certificate server id {server_id} is out of range")
    if not issued < not_after <= issued + MAX_LIFETIME:
        raise CryptoError("certificate validity period is out of range")
    try:
        cluster_public_key.key().verify(signature, CERT_DOMAIN + body)
    except InvalidSignature:
        raise CryptoError(
            "certificate not signed by the pinned cluster key", Reason.BAD_SIGNATURE
        ) from None
    cert = ServerCertificate(version, server_id, x_pub, ed_pub, issued, not_after, blob)
    _check_validity(cert, now)
    return cert


def _check_validity(cert: ServerCertificate, now: float) -> None:
    if now > cert.not_after:
        raise CryptoError(f"certificate of server {cert.server_id} has expired", Reason.EXPIRED)
    if now + CLOCK_SKEW < cert.issued_at:
        raise CryptoError(
            f"certificate of server {cert.server_id} is not valid yet (clock skew?)",
            Reason.EXPIRED,
        )


class CertificateCache:
    """Certificates already verified under one pinned key (bounded LRU; only verified ones enter).

    A client verifying a stream of signed frames then pays one signature check per frame,
    not two; validity times are still checked on every use.
    """

    def __init__(self, pinned: ClusterPublicKey, max_entries: int = 64) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.pinned = pinned
        self._max = max_entries
        self._certs: OrderedDict[bytes, ServerCertificate] = OrderedDict()

    def __len__(self) -> int:
        return len(self._certs)

    def verify(self, blob: bytes, now: float) -> ServerCertificate:
        """As ``verify_certificate`` under the pinned key; a known blob skips the signature."""
        blob = bytes(blob)
        cert = self._certs.get(blob)
        if cert is None:
            cert = verify_certificate(self.pinned, blob, now)
            self._certs[blob] = cert
            if len(self._certs) > self._max:
                self._certs.popitem(last=False)
        else:
            _check_validity(cert, now)
            self._certs.move_to_end(blob)
        return cert


def verify_server_static(
    pinned_cluster_key: ClusterPublicKey,
    cert_blob: bytes,
    remote_static: bytes,
    now: float,
    cache: CertificateCache | None = None,
) -> ServerCertificate:
    """The certificate from a server's Noise handshake, if it certifies the proven static key.

    ``remote_static`` is the X25519 key the handshake authenticated; a certificate that is
    valid but names another key (a server replaying a neighbour's certificate) is refused.
    """
    if cache is not None and cache.pinned != pinned_cluster_key:
        raise ValueError("the certificate cache belongs to another pinned key")
    if cache is None:
        cert = verify_certificate(pinned_cluster_key, cert_blob, now)
    else:
        cert = cache.verify(cert_blob, now)
    if bytes(remote_static) != cert.x25519_public:
        raise CryptoError(
            f"the handshake's static key is not the one certified for server {cert.server_id}",
            Reason.BAD_SIGNATURE,
        )
    return cert


@dataclass(frozen=True, slots=True)
class SignedDatagram:
    """A verified server datagram: who signed it (``cert``) and its ``body``."""

    cert: ServerCertificate
    body: bytes


def sign_datagram(server_key: Ed25519PrivateKey, cert_blob: bytes, body: bytes) -> bytes:
    """``body`` signed by the server's Ed25519 key, with its certificate attached."""
    if len(cert_blob) > 0xFFFF:
        raise ValueError("certificate too large")
    size = _SIGNED_HEAD.size + len(cert_blob) + len(body) + 64
    if size > MAX_SIGNED_DATAGRAM:
        raise ValueError(f"a signed datagram holds at most {MAX_SIGNED_DATAGRAM} bytes, not {size}")
    signed = _SIGNED_HEAD.pack(SIGNED_VERSION, len(cert_blob)) + bytes(cert_blob) + bytes(body)
    return signed + server_key.sign(SIGNED_DOMAIN + signed)


def verify_datagram(
    pinned_cluster_key: ClusterPublicKey,
    blob: bytes,
    now: float,
    cache: CertificateCache | None = None,
) -> SignedDatagram:
    """The certificate and body of a signed datagram, checked against the pinned cluster key.

    Raises CryptoError (MALFORMED, UNKNOWN_VERSION, BAD_SIGNATURE, EXPIRED) and nothing else.
    A ``cache`` (made for the same pinned key) saves the certificate's signature check.
    """
    if cache is not None and cache.pinned != pinned_cluster_key:
        raise ValueError("the certificate cache belongs to another pinned key")
    blob = bytes(blob)
    if len(blob) > MAX_SIGNED_DATAGRAM:
        raise CryptoError(f"signed datagram of {len(blob)} bytes is too large")
    if len(blob) < _SIGNED_HEAD.size:
        raise CryptoError("signed datagram too short")
    version, cert_size = _SIGNED_HEAD.unpack_from(blob)
    if version != SIGNED_VERSION:
        raise CryptoError(f"signed datagram version {version} is unknown", Reason.UNKNOWN_VERSION)
    body_start = _SIGNED_HEAD.size + cert_size
    if len(blob) < body_start + 64:
        raise CryptoError("signed datagram too short for its certificate and signature")
    cert_blob = blob[_SIGNED_HEAD.size : body_start]
    if cache is None:
        cert = verify_certificate(pinned_cluster_key, cert_blob, now)
    else:
        cert = cache.verify(cert_blob, now)
    signed, signature = blob[:-64], blob[-64:]
    try:
        key = Ed25519PublicKey.from_public_bytes(cert.ed25519_public)
        key.verify(signature, SIGNED_DOMAIN + signed)
    except (InvalidSignature, ValueError):
        raise CryptoError(
            f"datagram not signed by server {cert.server_id}'s certified key", Reason.BAD_SIGNATURE
        ) from None
    return SignedDatagram(cert, blob[body_start:-64])
