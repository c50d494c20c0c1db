"""Simulated identities and sessions: keys from fixed seeds, a channel binding per session."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from tchat.core.messages import Register
from tchat.crypto.identity import Identity, sign_binding, verify_binding


class Identities:
    """Every simulated user's key, made from its owner's name: Ed25519 signatures are
    deterministic, so a seed replays exactly. An owner is a person: two clients of one
    owner are one account's terminals, two owners of one name are rivals for it."""

    def __init__(self) -> None:
        self._keys: dict[str, Identity] = {}

    def key(self, owner: str) -> Identity:
        found = self._keys.get(owner)
        if found is None:
            seed = hashlib.sha256(b"tchat sim identity\0" + owner.encode()).digest()
            found = self._keys[owner] = Identity.from_seed(seed)
        return found

    def public(self, owner: str) -> bytes:
        return self.key(owner).public_raw


def session_binding(
    client: str, client_incarnation: int, server: str, server_incarnation: int
) -> bytes:
    """The binding of one simulated session (a client's connection to one incarnation of a
    server): what the runtime's Challenge nonce (later the Noise handshake hash) is."""
    text = f"{client}#{client_incarnation}>{server}#{server_incarnation}"
    return hashlib.sha256(text.encode()).digest()


def signed(register: Register, key: Identity, binding: bytes) -> Register:
    """``register`` with its proof for the session ``binding`` names."""
    return replace(register, proof=sign_binding(key, binding, register.name))


def proven(register: Register, binding: bytes) -> bool:
    """Whether the server's runtime would let ``register`` reach its core."""
    return verify_binding(register.identity, binding, register.name, register.proof)
