"""The Noise Protocol Framework (revision 34) over `cryptography`'s X25519 and AEADs and hashlib.

Only the state machine lives here (CipherState, SymmetricState, HandshakeState, spec section 5);
every primitive comes from `cryptography` or hashlib/hmac. Every failure caused by bytes a peer
sent raises `NoiseError` and nothing else; a `HandshakeState` whose read failed is poisoned
(its hash already absorbed the bad message) and refuses every later call.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tchat.crypto.patterns import ProtocolName, parse_protocol_name

MAX_MESSAGE = 65535  # spec 3: every Noise message, handshake or transport, fits in 65535 bytes
TAG_LEN = 16
DH_LEN = 32
KEY_LEN = 32
PSK_LEN = 32
MAX_NONCE = 2**64 - 1  # reserved by the spec (5.1): never used to encrypt


class NoiseError(ValueError):
    """A Noise message was refused (bad tag, bad length, bad key, out of turn) or misused."""


_Aead = ChaCha20Poly1305 | AESGCM
# What the AEADs accept without a copy: records are opened straight from the receive buffer.
BytesLike = bytes | bytearray | memoryview


# Spec 12.3 / 12.4: 32 zero bits then the 64-bit counter, little-endian for ChaChaPoly and
# big-endian for AESGCM.
_chacha_nonce = struct.Struct("<4xQ").pack
_aesgcm_nonce = struct.Struct(">4xQ").pack


_CIPHERS: dict[str, tuple[type[_Aead], Callable[[int], bytes]]] = {
    "ChaChaPoly": (ChaCha20Poly1305, _chacha_nonce),
    "AESGCM": (AESGCM, _aesgcm_nonce),
}
# hashlib names: hashlib.new() and hmac's one-shot digest take them for all four hashes.
_HASHES: dict[str, str] = {
    "SHA256": "sha256",
    "SHA512": "sha512",
    "BLAKE2s": "blake2s",
    "BLAKE2b": "blake2b",
}


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The 32-byte public key of an X25519 private key."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def private_key(raw: bytes | X25519PrivateKey) -> X25519PrivateKey:
    """An X25519 private key from its 32 raw bytes (or the key itself)."""
    if isinstance(raw, X25519PrivateKey):
        return raw
    if len(raw) != DH_LEN:
        raise NoiseError(f"an X25519 private key is {DH_LEN} bytes, got {len(raw)}")
    return X25519PrivateKey.from_private_bytes(raw)


def _dh(priv: X25519PrivateKey, pub: bytes) -> bytes:
    try:
        return priv.exchange(X25519PublicKey.from_public_bytes(pub))
    except ValueError as exc:
        # A low-order point gives the all-zero secret, which `cryptography` refuses.
        raise NoiseError(f"bad X25519 public key from peer: {exc}") from None


class CipherState:
    """A key and a nonce counter (spec 5.1); one per direction after the handshake."""

    __slots__ = ("_aead", "_nonce_of", "n")

    def __init__(self, cipher: str, key: bytes | None = None) -> None:
        factory, self._nonce_of = _CIPHERS[cipher]
        # The AEAD object is built once per key: building it per message would cost a key setup.
        self._aead: _Aead | None = factory(key) if key is not None else None
        self.n = 0

    def has_key(self) -> bool:
        return self._aead is not None

    def encrypt_with_ad(self, ad: bytes, plaintext: BytesLike) -> bytes:
        if self._aead is None:
            return bytes(plaintext)
        if self.n >= MAX_NONCE:
            raise NoiseError("nonce space exhausted: the session must end")
        out = self._aead.encrypt(self._nonce_of(self.n), plaintext, ad)
        self.n += 1
        return out

    def decrypt_with_ad(self, ad: bytes, ciphertext: BytesLike) -> bytes:
        if self._aead is None:
            return bytes(ciphertext)
        if self.n >= MAX_NONCE:
            raise NoiseError("nonce space exhausted: the session must end")
        if len(ciphertext) < TAG_LEN:
            raise NoiseError(f"ciphertext of {len(ciphertext)} bytes is shorter than its tag")
        try:
            out = self._aead.decrypt(self._nonce_of(self.n), ciphertext, ad)
        except InvalidTag:
            # The spec leaves n unchanged on failure; our callers close the session anyway.
            raise NoiseError("bad authentication tag (forged, replayed or reordered)") from None
        self.n += 1
        return out


class SymmetricState:
    """The chaining key and handshake hash (spec 5.2)."""

    __slots__ = ("_cipher_name", "_hash", "hash_len", "ck", "h", "cipher")

    def __init__(self, protocol: ProtocolName) -> None:
        self._cipher_name = protocol.cipher
        self._hash = _HASHES[protocol.hash]
        self.hash_len = hashlib.new(self._hash).digest_size
        name = protocol.full.encode("ascii")
        if len(name) <= self.hash_len:
            self.h = name + bytes(self.hash_len - len(name))
        else:
            self.h = self._digest(name)
        self.ck = self.h
        self.cipher = CipherState(self._cipher_name)

    def _digest(self, data: bytes) -> bytes:
        return hashlib.new(self._hash, data).digest()

    def _hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self._hash)

    def hkdf(self, ikm: bytes, outputs: int) -> tuple[bytes, ...]:
        """HKDF exactly as spec 4.3 defines it (HMAC chained, 2 or 3 outputs)."""
        temp_key = self._hmac(self.ck, ikm)
        out1 = self._hmac(temp_key, b"\x01")
        out2 = self._hmac(temp_key, out1 + b"\x02")
        if outputs == 2:
            return out1, out2
        return out1, out2, self._hmac(temp_key, out2 + b"\x03")

    def mix_key(self, ikm: bytes) -> None:
        self.ck, temp_k = self.hkdf(ikm, 2)
        self.cipher = CipherState(self._cipher_name, temp_k[:KEY_LEN])

    def mix_hash(self, data: bytes) -> None:
        self.h = self._digest(self.h + data)

    def mix_key_and_hash(self, ikm: bytes) -> None:
        self.ck, temp_h, temp_k = self.hkdf(ikm, 3)
        self.mix_hash(temp_h)
        self.cipher = CipherState(self._cipher_name, temp_k[:KEY_LEN])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        k1, k2 = self.hkdf(b"", 2)
        return (
            CipherState(self._cipher_name, k1[:KEY_LEN]),
            CipherState(self._cipher_name, k2[:KEY_LEN]),
        )


class HandshakeState:
    """One side of a Noise handshake (spec 5.3): `write_message` / `read_message` in turn.

    `fixed_ephemeral` exists only for the published test vectors (they fix the ephemeral key);
    runtime code never passes it: a reused ephemeral key breaks the handshake's secrecy.
    """

    def __init__(
        self,
        protocol_name: str,
        *,
        initiator: bool,
        prologue: bytes = b"",
        static: bytes | X25519PrivateKey | None = None,
        remote_static: bytes | None = None,
        psks: Sequence[bytes] = (),
        fixed_ephemeral: bytes | None = None,
    ) -> None:
        try:
            self.protocol = parse_protocol_name(protocol_name)
        except ValueError as exc:
            raise NoiseError(str(exc)) from None
        pattern = self.protocol.pattern
        self.initiator = initiator
        self._s = private_key(static) if static is not None else None
        self._s_pub = public_bytes(self._s) if self._s is not None else None
        if remote_static is not None and len(remote_static) != DH_LEN:
            raise NoiseError(f"a remote static key is {DH_LEN} bytes, got {len(remote_static)}")
        self._rs = bytes(remote_static) if remote_static is not None else None
        self._e: X25519PrivateKey | None = None
        self._re: bytes | None = None
        self._fixed_e = fixed_ephemeral
        if len(psks) != pattern.psk_count or any(len(p) != PSK_LEN for p in psks):
            raise NoiseError(f"{pattern.name} needs {pattern.psk_count} psks of {PSK_LEN} bytes")
        self._psks = [bytes(p) for p in psks]
        self._messages = pattern.messages
        self._index = 0
        self._failed = False
        self._result: tuple[CipherState, CipherState] | None = None
        self._symmetric = SymmetricState(self.protocol)
        self._symmetric.mix_hash(prologue)
        # Pre-messages (spec 7.1): the initiator's first, then the responder's.
        for owner_is_initiator, tokens in (
            (True, pattern.initiator_pre),
            (False, pattern.responder_pre),
        ):
            for _ in tokens:  # only "s" occurs in the patterns we implement
                ours = owner_is_initiator == initiator
                key = self._s_pub if ours else self._rs
                if key is None:
                    who = "our" if ours else "the remote"
                    raise NoiseError(f"{pattern.name} needs {who} static key before it starts")
                self._symmetric.mix_hash(key)

    # -- state -------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._result is not None

    @property
    def handshake_hash(self) -> bytes:
        """h: unique to this session, the value to bind an application signature to."""
        return self._symmetric.h

    @property
    def remote_static(self) -> bytes | None:
        return self._rs

    @property
    def payload_was_encrypted(self) -> bool:
        """Whether the last message's payload was encrypted (a key had been mixed in by then)."""
        return self._symmetric.cipher.has_key()

    def our_turn_to_write(self) -> bool:
        if self.protocol.pattern.one_way:
            return self.initiator
        return (self._index % 2 == 0) == self.initiator

    def split(self) -> tuple[CipherState, CipherState]:
        """(send, receive) cipher states for this side, once the handshake is finished."""
        if self._result is None:
            raise NoiseError("the handshake is not finished")
        c1, c2 = self._result
        return (c1, c2) if self.initiator else (c2, c1)

    def _check_can(self, writing: bool) -> None:
        if self._failed:
            raise NoiseError("this handshake already failed; start a new one")
        if self._result is not None:
            raise NoiseError("handshake message after the handshake finished")
        if self.our_turn_to_write() != writing:
            verb = "write" if writing else "read"
            raise NoiseError(f"out of turn: cannot {verb} handshake message {self._index + 1}")

    def _dh_token(self, token: str) -> bytes:
        # es: initiator's e with responder's s; se: initiator's s with responder's e.
        if token == "ee":
            ours, theirs = self._e, self._re
        elif token == "ss":
            ours, theirs = self._s, self._rs
        elif (token == "es") == self.initiator:
            ours, theirs = self._e, self._rs
        else:
            ours, theirs = self._s, self._re
        if ours is None or theirs is None:
            raise NoiseError(f"token {token} needs a key this side does not have")
        return _dh(ours, theirs)

    def _advance(self) -> None:
        self._index += 1
        if self._index == len(self._messages):
            self._result = self._symmetric.split()
            # Spec 5.3: the handshake's secrets are no longer needed; keep no copy of them.
            self._e = None
            self._re = None
            self._fixed_e = None

    # -- messages ----------------------------------------------------------------------------

    def write_message(self, payload: bytes = b"") -> bytes:
        self._check_can(writing=True)
        try:
            message = self._write(payload)
        except NoiseError:
            # The hash may have absorbed part of the message: this state cannot go on.
            self._failed = True
            raise
        self._advance()
        return message

    def _write(self, payload: bytes) -> bytes:
        sym = self._symmetric
        out: list[bytes] = []
        for token in self._messages[self._index]:
            if token == "e":
                self._e = (
                    X25519PrivateKey.from_private_bytes(self._fixed_e)
                    if self._fixed_e is not None
                    else X25519PrivateKey.generate()
                )
                e_pub = public_bytes(self._e)
                out.append(e_pub)
                sym.mix_hash(e_pub)
                if self.protocol.pattern.psk_count:  # spec 9.2: e also keys the cipher
                    sym.mix_key(e_pub)
            elif token == "s":
                if self._s_pub is None:
                    raise NoiseError("this pattern sends our static key but none was given")
                out.append(sym.encrypt_and_hash(self._s_pub))
            elif token == "psk":
                sym.mix_key_and_hash(self._psks.pop(0))
            else:
                sym.mix_key(self._dh_token(token))
        out.append(sym.encrypt_and_hash(payload))
        message = b"".join(out)
        if len(message) > MAX_MESSAGE:
            raise NoiseError(f"handshake message of {len(message)} bytes exceeds {MAX_MESSAGE}")
        return message

    def read_message(self, message: bytes) -> bytes:
        self._check_can(writing=False)
        if len(message) > MAX_MESSAGE:
            raise NoiseError(f"handshake message of {len(message)} bytes exceeds {MAX_MESSAGE}")
        try:
            payload = self._read(bytes(message))
        except NoiseError:
            self._failed = True
            raise
        self._advance()
        return payload

    def _read(self, message: bytes) -> bytes:
        sym = self._symmetric
        pos = 0
        for token in self._messages[self._index]:
            if token == "e":
                if len(message) - pos < DH_LEN:
                    raise NoiseError("handshake message too short for an ephemeral key")
                self._re = message[pos : pos + DH_LEN]
                pos += DH_LEN
                sym.mix_hash(self._re)
                if self.protocol.pattern.psk_count:
                    sym.mix_key(self._re)
            elif token == "s":
                size = DH_LEN + (TAG_LEN if sym.cipher.has_key() else 0)
                if len(message) - pos < size:
                    raise NoiseError("handshake message too short for a static key")
                self._rs = sym.decrypt_and_hash(message[pos : pos + size])
                pos += size
            elif token == "psk":
                sym.mix_key_and_hash(self._psks.pop(0))
            else:
                sym.mix_key(self._dh_token(token))
        if sym.cipher.has_key() and len(message) - pos < TAG_LEN:
            raise NoiseError("handshake message too short for its payload tag")
        return sym.decrypt_and_hash(message[pos:])
