"""A user's identity (an Ed25519 key pair kept 0600) and the login proof bound to one session.

- ``load_or_create_identity(path=None)`` reads ``client_data_dir()/identity.key``, creating
  it on first run. The file is one ASCII line: ``tchat-ed25519-v1 <base64 32-byte seed>``.
- ``fingerprint(public_raw)`` is ``SHA256:`` + unpadded base64 of sha256(raw public key),
  as OpenSSH prints host keys; ``short_fingerprint`` is its first 12 characters after the
  prefix (72 bits), for display only: compare full fingerprints.
- ``sign_binding(identity, handshake_hash, name)`` signs ``b"tchat login v1\\0" + name +
  b"\\0" + handshake_hash``: the proof names this session (the Noise handshake hash, unique
  per session) and this name, so a captured proof is worthless on another session or for
  another name. ``verify_binding`` returns False for any bad input and never raises.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from tchat.crypto.errors import CryptoError
from tchat.crypto.keyfiles import (
    client_data_dir,
    load_or_create_line,
)

IDENTITY_FILE = "identity.key"
IDENTITY_TAG = "tchat-ed25519-v1"
LOGIN_DOMAIN = b"tchat login v1\0"
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
# A Noise handshake hash is a hash output: 32 bytes (SHA-256) or 64 (BLAKE2b/SHA-512).
MIN_HANDSHAKE_HASH = 32
MAX_HANDSHAKE_HASH = 64
# Names are bounded far lower by the core (messages.MAX_NAME); this only bounds the work.
MAX_BOUND_NAME = 1024


def fingerprint(public_raw: bytes) -> str:
    """``SHA256:<unpadded base64 of sha256(public_raw)>``, as OpenSSH prints it."""
    digest = hashlib.sha256(public_raw).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def short_fingerprint(full: str) -> str:
    """The first 12 characters of a fingerprint's hash, for display (never for comparison)."""
    return full.removeprefix("SHA256:")[:12]


def raw_public(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def raw_seed(key: Ed25519PrivateKey) -> bytes:
    """The 32-byte seed of an Ed25519 private key (what the key files store)."""
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


@dataclass(frozen=True, slots=True)
class Identity:
    """A user's Ed25519 key pair; ``public_raw`` is what the account binds the name to."""

    private_key: Ed25519PrivateKey = field(repr=False)
    public_raw: bytes

    @classmethod
    def generate(cls) -> Identity:
        """A fresh identity (not saved)."""
        return cls.from_seed(raw_seed(Ed25519PrivateKey.generate()))

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity of a 32-byte seed."""
        if len(seed) != 32:
            raise CryptoError(f"an Ed25519 seed is 32 bytes, not {len(seed)}")
        key = Ed25519PrivateKey.from_private_bytes(seed)
        return cls(key, raw_public(key.public_key()))

    @property
    def fingerprint(self) -> str:
        """The public key's fingerprint (``SHA256:...``)."""
        return fingerprint(self.public_raw)

    def export_line(self) -> str:
        """The key file's single line (holds the private seed: write it 0600 only)."""
        seed = base64.b64encode(raw_seed(self.private_key)).decode("ascii")
        return f"{IDENTITY_TAG} {seed}"

    @classmethod
    def parse_line(cls, line: str, source: str = "identity key") -> Identity:
        """Parse ``tchat-ed25519-v1 <base64 seed>``; CryptoError naming ``source`` if it is not."""
        parts = line.split()
        if len(parts) != 2 or parts[0] != IDENTITY_TAG:
            raise CryptoError(f"{source}: expected '{IDENTITY_TAG} <base64 seed>'")
        try:
            seed = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError(f"{source}: the seed is not base64") from None
        if len(seed) != 32:
            raise CryptoError(f"{source}: the seed is {len(seed)} bytes, not 32")
        return cls.from_seed(seed)


def load_or_create_identity(path: Path | None = None) -> Identity:
    """The identity in ``path`` (default: the client data dir); created 0600 if absent."""
    path = client_data_dir() / IDENTITY_FILE if path is None else path
    # Another tchat of the same user may create it first: that one is used, never overwritten.
    return load_or_create_line(path, Identity.parse_line, Identity.generate, Identity.export_line)


def _binding_message(handshake_hash: bytes, name: str) -> bytes:
    encoded = name.encode("utf-8")
    if not encoded or b"\0" in encoded or len(encoded) > MAX_BOUND_NAME:
        # The NUL separates name from hash; a name holding one would make the split ambiguous.
        raise CryptoError("a bound name is 1..1024 UTF-8 bytes without NUL")
    if not MIN_HANDSHAKE_HASH <= len(handshake_hash) <= MAX_HANDSHAKE_HASH:
        raise CryptoError(f"a handshake hash is 32..64 bytes, not {len(handshake_hash)}")
    return LOGIN_DOMAIN + encoded + b"\0" + bytes(handshake_hash)


def sign_binding(identity: Identity, handshake_hash: bytes, name: str) -> bytes:
    """The 64-byte login proof: ``identity`` claims ``name`` on this handshake's session."""
    return identity.private_key.sign(_binding_message(handshake_hash, name))


def verify_binding(
    public_key_raw: bytes, handshake_hash: bytes, name: str, signature: bytes
) -> bool:
    """Whether ``signature`` proves the key claims ``name`` on this session; never raises."""
    if len(public_key_raw) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        message = _binding_message(handshake_hash, name)
        Ed25519PublicKey.from_public_bytes(bytes(public_key_raw)).verify(bytes(signature), message)
    except (CryptoError, InvalidSignature, ValueError, UnicodeEncodeError):
        return False
    return True
