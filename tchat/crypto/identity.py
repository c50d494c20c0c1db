# STAND-IN: replaced at merge by the keys branch
"""A user's identity: an Ed25519 key pair kept in the XDG data dir, and login proofs with it."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_SIZE = 32
SIGNATURE_SIZE = 64
_CONTEXT = b"tchat login v1\0"


def default_identity_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tchat" / "identity.key"


def load_or_create_identity(path: Path | None = None) -> Ed25519PrivateKey:
    """The key at ``path`` (default: $XDG_DATA_HOME/tchat/identity.key), created on first use."""
    path = path or default_identity_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: two clients starting at once must not both write (one would lose its key).
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_identity(path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        return key
    if len(raw) != 32:
        raise ValueError(f"{path}: not an identity key ({len(raw)} bytes, expected 32)")
    with contextlib.suppress(OSError):
        path.chmod(0o600)
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes of ``key``'s public half."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public_raw: bytes) -> str:
    """A short, human-comparable form of a public key."""
    digest = hashlib.sha256(public_raw).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def _signed(handshake_hash: bytes, name: str) -> bytes:
    return _CONTEXT + name.encode() + b"\0" + handshake_hash


def sign_binding(key: Ed25519PrivateKey, handshake_hash: bytes, name: str) -> bytes:
    """Proof that the holder of ``key`` logs in as ``name`` on this session."""
    return key.sign(_signed(handshake_hash, name))


def verify_binding(public_raw: bytes, handshake_hash: bytes, name: str, signature: bytes) -> bool:
    """Whether ``signature`` proves ``name``'s login on this session by ``public_raw``'s key."""
    if len(public_raw) != PUBLIC_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(
            signature, _signed(handshake_hash, name)
        )
    except (InvalidSignature, ValueError):
        return False
    return True
