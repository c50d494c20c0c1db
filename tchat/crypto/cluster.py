"""The cluster secret, what is derived from it, and each server's own key pair.

The secret is 32 random bytes that every server of a cluster shares and no client holds.
It is written as one line of base64 (``ClusterSecret.export_line()``, what ``tchat key
show`` prints; 64 hex digits are accepted too) and found by ``load_cluster_secret``, first
match wins (the command line over the environment, as every option; options.py adds a
config file's ``cluster_key_file`` or ``cluster_key`` after these two):

1. ``--cluster-key-file FILE`` (mode 0600, must exist);
2. the environment variable ``TCHAT_CLUSTER_KEY`` (the whole secret);
3. ``DATA_DIR/cluster.key``, created 0600 on a server's first start (``create=True``).

Every secret file goes through keyfiles.py (modes, owner, size, one line).

Derived keys (HKDF-SHA256, salt ``b"tchat cluster v1"``, 32 bytes each):

=====================  ================================  =====================================
key                    HKDF info                         use
=====================  ================================  =====================================
cluster signing key    ``b"tchat cluster signing v1"``   Ed25519 seed; certifies server keys;
                                                         its public key is what clients pin
datagram root          ``b"tchat datagram root v1"``     server-to-server AEAD (datagram.py)
admin MAC key          ``b"tchat admin mac v1"``         HMAC-SHA256 of operator commands
=====================  ================================  =====================================

Each server also has its own keys in ``DATA_DIR/server.key`` (0600; one line
``tchat-server-v1 <base64 Ed25519 seed> <base64 X25519 private key>``): the Ed25519 key
signs the datagrams clients verify, the X25519 key is the Noise static key. The cluster
vouches for them with a ``ServerCertificate`` (certificate.py), so a server key can be
replaced without changing what clients pin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from tchat.crypto.errors import CryptoError, Reason
from tchat.crypto.identity import fingerprint, raw_public, raw_seed, short_fingerprint
from tchat.crypto.keyfiles import (
    KeyFileError,
    load_or_create_line,
    read_secret_line,
    write_secret_file,
)

SECRET_SIZE = 32
ENV_VAR = "TCHAT_CLUSTER_KEY"
CLUSTER_KEY_FILE = "cluster.key"
SERVER_KEY_FILE = "server.key"
SERVER_KEY_TAG = "tchat-server-v1"
HKDF_SALT = b"tchat cluster v1"
INFO_SIGNING = b"tchat cluster signing v1"
INFO_DATAGRAM_ROOT = b"tchat datagram root v1"
INFO_ADMIN_MAC = b"tchat admin mac v1"
ADMIN_DOMAIN = b"tchat admin v1\0"
# A rotation: the key of a secret a server still holds signs the key it now presents, so
# a client that pinned the first takes the second without a key-changed stop. Forward (step
# 2): the previous key vouches for the current one, which clients then pin. Back (step 1):
# the next key vouches for the current one it will replace, which a client that already
# pinned the next key accepts for the run without moving its pin back to it.
VOUCH_DOMAIN = b"tchat cluster vouch v1\0"
VOUCH_BACK_DOMAIN = b"tchat cluster vouch back v1\0"
FORWARD, BACK = "forward", "back"
VOUCH_SIZE = 32 + 64  # the vouching key, its signature


def hkdf(key: bytes, info: bytes, salt: bytes = HKDF_SALT, length: int = 32) -> bytes:
    """HKDF-SHA256 of ``key`` for one ``info`` label (distinct labels give independent keys)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def parse_secret(text: str, source: str) -> bytes:
    """32 bytes from one line of base64 (padding optional) or 64 hex digits; CryptoError if not."""
    text = text.strip()
    if len(text) == 2 * SECRET_SIZE and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != SECRET_SIZE:
        raise CryptoError(
            f"{source}: a cluster secret is 32 bytes as one line of base64 (or 64 hex digits)"
        )
    return raw


@dataclass(frozen=True, slots=True)
class ClusterPublicKey:
    """The cluster's Ed25519 public key: what clients pin and verify server certificates with."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise CryptoError(f"a cluster public key is 32 bytes, not {len(self.raw)}")

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` as OpenSSH prints it."""
        return fingerprint(self.raw)

    @property
    def short_fingerprint(self) -> str:
        """12 characters for display."""
        return short_fingerprint(self.fingerprint)

    def key(self) -> Ed25519PublicKey:
        """The key object (CryptoError if the bytes are not a usable Ed25519 key)."""
        try:
            return Ed25519PublicKey.from_public_bytes(self.raw)
        except ValueError:
            raise CryptoError("the cluster public key is not a valid Ed25519 key") from None

    def vouches_for(self, other: ClusterPublicKey, signature: bytes) -> bool:
        """Whether ``signature`` is this key's forward vouch for ``other`` (never raises)."""
        return self.vouch_direction(other, signature) == FORWARD

    def vouch_direction(self, other: ClusterPublicKey, signature: bytes) -> str | None:
        """FORWARD if ``signature`` is this key's vouch for ``other`` as its successor, BACK
        if for ``other`` as the key this one replaces, None if neither (never raises)."""
        for direction, domain in ((FORWARD, VOUCH_DOMAIN), (BACK, VOUCH_BACK_DOMAIN)):
            try:
                self.key().verify(bytes(signature), domain + other.raw)
            except (CryptoError, InvalidSignature, ValueError):
                continue
            return direction
        return None


@dataclass(frozen=True)
class ClusterSecret:
    """The shared cluster secret; ``origin`` says where it came from, ``created`` if just made."""

    raw: bytes = field(repr=False)
    origin: str = field(default="", compare=False)
    created: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.raw) != SECRET_SIZE:
            raise CryptoError(f"a cluster secret is {SECRET_SIZE} bytes, not {len(self.raw)}")

    @classmethod
    def generate(cls, origin: str = "generated") -> ClusterSecret:
        """A fresh random secret."""
        return cls(os.urandom(SECRET_SIZE), origin, created=True)

    def export_line(self) -> str:
        """The secret as one line of base64 (for ``tchat key show`` and the key file)."""
        return base64.b64encode(self.raw).decode("ascii")

    @cached_property
    def signing_key(self) -> Ed25519PrivateKey:
        """The cluster signing key (certifies server keys)."""
        return Ed25519PrivateKey.from_private_bytes(hkdf(self.raw, INFO_SIGNING))

    @cached_property
    def public_key(self) -> ClusterPublicKey:
        """The cluster public key that clients pin."""
        return ClusterPublicKey(raw_public(self.signing_key.public_key()))

    @cached_property
    def datagram_root(self) -> bytes:
        """The root from which each server boot's datagram key is derived (datagram.py)."""
        return hkdf(self.raw, INFO_DATAGRAM_ROOT)

    @cached_property
    def admin_mac_key(self) -> bytes:
        """The HMAC-SHA256 key of operator commands (``tchat admin ...``)."""
        return hkdf(self.raw, INFO_ADMIN_MAC)

    def vouch_for(self, other: ClusterPublicKey, forward: bool = True) -> bytes:
        """``public_key | signature`` (VOUCH_SIZE bytes): this secret's cluster key vouches
        for ``other``, the key of the secret a rotating server certifies with: as its
        successor (``forward``, step 2), or as the key it replaces (step 1)."""
        domain = VOUCH_DOMAIN if forward else VOUCH_BACK_DOMAIN
        return self.public_key.raw + self.signing_key.sign(domain + other.raw)

    def admin_mac(self, command: bytes) -> bytes:
        """HMAC-SHA256 of an encoded admin command (the caller puts a nonce or time in it)."""
        return hmac.new(self.admin_mac_key, ADMIN_DOMAIN + command, hashlib.sha256).digest()

    def check_admin_mac(self, command: bytes, tag: bytes) -> bool:
        """Whether ``tag`` is the admin MAC of ``command`` (constant time)."""
        return hmac.compare_digest(self.admin_mac(command), bytes(tag))


def load_cluster_secret(
    env: Mapping[str, str], key_file: Path | None, data_dir: Path | None, create: bool
) -> ClusterSecret:
    """The cluster secret: ``key_file``, else ``TCHAT_CLUSTER_KEY``, else ``data_dir/cluster.key``.

    With ``create`` (a server) a missing ``data_dir/cluster.key`` is created 0600 and the
    result has ``created=True`` so the caller can print how to share it. A given but
    missing ``key_file`` is an error (never silently replaced by a new secret). Raises
    CryptoError (KeyFileError for file problems) with a message that says what to do.
    """
    if key_file is not None:
        return read_cluster_secret(key_file)
    if ENV_VAR in env:
        value = env[ENV_VAR]
        if not value.strip():
            raise CryptoError(f"{ENV_VAR} is set but empty", Reason.MISSING)
        return ClusterSecret(parse_secret(value, ENV_VAR), f"${ENV_VAR}")
    if data_dir is None:
        raise CryptoError(
            f"no cluster secret: set {ENV_VAR} or pass --cluster-key-file FILE", Reason.MISSING
        )
    path = data_dir / CLUSTER_KEY_FILE
    try:
        return read_cluster_secret(path)
    except KeyFileError as exc:
        if exc.reason is not Reason.MISSING or not create:
            raise
    secret = ClusterSecret.generate(str(path))
    try:
        write_secret_file(path, (secret.export_line() + "\n").encode("ascii"))
    except FileExistsError:  # another process made it first: theirs is the secret
        return read_cluster_secret(path)
    return secret


def read_cluster_secret(path: Path) -> ClusterSecret:
    """The secret in a key file (0600, ours, one line); KeyFileError or CryptoError if not."""
    return ClusterSecret(parse_secret(read_secret_line(path), str(path)), str(path))


@dataclass(frozen=True, slots=True)
class ServerKeys:
    """A server's own keys: Ed25519 (signs datagrams for clients) and X25519 (Noise static)."""

    signing_key: Ed25519PrivateKey = field(repr=False)
    static_key: X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> ServerKeys:
        """Fresh keys (not saved)."""
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @property
    def ed25519_public(self) -> bytes:
        """Raw Ed25519 public key (32 bytes)."""
        return raw_public(self.signing_key.public_key())

    @property
    def x25519_public(self) -> bytes:
        """Raw X25519 public key (32 bytes)."""
        return self.static_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def x25519_private(self) -> bytes:
        """Raw X25519 private key (32 bytes), for the Noise handshake."""
        return self.static_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def export_line(self) -> str:
        """The key file's line (private material: 0600 only)."""
        ed = base64.b64encode(raw_seed(self.signing_key)).decode("ascii")
        x = base64.b64encode(self.x25519_private).decode("ascii")
        return f"{SERVER_KEY_TAG} {ed} {x}"

    @classmethod
    def parse_line(cls, line: str, source: str) -> ServerKeys:
        """Parse the key file's line; CryptoError naming ``source`` if malformed."""
        parts = line.split()
        if len(parts) != 3 or parts[0] != SERVER_KEY_TAG:
            raise CryptoError(f"{source}: expected '{SERVER_KEY_TAG} <ed25519> <x25519>'")
        try:
            ed, x = (base64.b64decode(p, validate=True) for p in parts[1:])
        except (binascii.Error, ValueError):
            raise CryptoError(f"{source}: a key is not base64") from None
        if len(ed) != 32 or len(x) != 32:
            raise CryptoError(f"{source}: each key is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(ed), X25519PrivateKey.from_private_bytes(x))


def load_or_create_server_keys(data_dir: Path) -> ServerKeys:
    """The server's keys in ``data_dir/server.key``, created 0600 on first start."""
    return load_or_create_line(
        data_dir / SERVER_KEY_FILE,
        ServerKeys.parse_line,
        ServerKeys.generate,
        ServerKeys.export_line,
    )
